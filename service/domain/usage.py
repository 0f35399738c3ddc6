"""A customer's usage per business day, and the advice to raise the Trigger Amount.

`Usage` keeps, for the newest business days only (the newest day and the 7 before it), the sum
of the balance decreases of each day and the lowest balance seen that day. `observe()` folds one
applied balance event into it; it runs for every balance event, so it stays small: a tuple of at
most 8 days, no pydantic, and it returns the same value when nothing changes.

`advice()` is the notice `trigger_amount_too_low` of the contract: after a top-up the balance is
still at or below the threshold, or the highest daily usage of the last 7 business days (and
today) is larger than the Trigger Amount. docs/rules.md, "Trigger Amount advisor".
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import NamedTuple

from service.domain.money import minor_unit_exponent, minus, plus, quantize
from service.domain.reasons import AdviceReason
from service.domain.values import value

# The window: the newest business day and the 7 before it (8 days at most).
WINDOW_DAYS = 7
# At most one notice per customer per this many days.
NOTICE_INTERVAL_DAYS = 7

_WINDOW = timedelta(days=WINDOW_DAYS)
_NOTICE_INTERVAL = timedelta(days=NOTICE_INTERVAL_DAYS)
_UNIT = Decimal(1)


class DayUsage(NamedTuple):
    """One business day: its date, the sum of its balance decreases (>= 0), its lowest balance."""

    day: date
    usage: Decimal
    low: Decimal


@value
class Usage:
    """The observed business days, oldest first, distinct dates, at most 8, never empty when
    built by `observe()`; every day is within `WINDOW_DAYS` of the newest (the last one)."""

    days: tuple[DayUsage, ...]


@value
class Advice:
    """The notice `trigger_amount_too_low`: what the customer uses, and what would cover it."""

    observed_daily_usage: Decimal
    recommended_trigger_amount: Decimal
    reason: AdviceReason


def observe(
    usage: Usage | None, day: date, previous_balance: Decimal | None, balance: Decimal
) -> Usage:
    """`usage` after one applied balance event dated on business day `day`, which changed the
    stored balance from `previous_balance` (None: the wallet's first balance) to `balance`.

    A decrease adds to the day's usage; an increase (a top-up, a payment) does not, nor does the
    first balance. A late event for an older day still inside the window adds to that day; one
    older than the window changes nothing. A newer day drops the days more than `WINDOW_DAYS`
    before it."""
    used = (
        minus(previous_balance, balance)
        if previous_balance is not None and balance < previous_balance
        else None
    )
    if usage is None:
        return Usage((_new_day(day, used, balance),))
    days = usage.days
    last = days[-1]
    if day == last.day:  # the common case: another event of the newest day
        if used is None and balance >= last.low:
            return usage
        return Usage((*days[:-1], _add(last, used, balance)))
    if day > last.day:
        return Usage((*_since(days, day - _WINDOW), _new_day(day, used, balance)))
    return _late(usage, day, used, balance)


def _since(days: tuple[DayUsage, ...], start: date) -> tuple[DayUsage, ...]:
    """The days from `start` on (`days` is in date order)."""
    first = 0
    while first < len(days) and days[first].day < start:
        first += 1
    return days[first:] if first else days


def _new_day(day: date, used: Decimal | None, balance: Decimal) -> DayUsage:
    # A day without decreases has a zero usage at the balance's own scale (`balance - balance`
    # is +0 with its exponent), so that a day's amounts share one exponent (usage_codec).
    return DayUsage(day, balance - balance if used is None else used, balance)


def _add(entry: DayUsage, used: Decimal | None, balance: Decimal) -> DayUsage:
    day, total, low = entry
    return DayUsage(
        day, total if used is None else plus(total, used), balance if balance < low else low
    )


def _late(usage: Usage, day: date, used: Decimal | None, balance: Decimal) -> Usage:
    """An event for a day before the newest: added to its day when inside the window."""
    days = usage.days
    if days[-1].day - day > _WINDOW:
        return usage
    for i, entry in enumerate(days):
        if entry.day == day:
            if used is None and balance >= entry.low:
                return usage
            return Usage((*days[:i], _add(entry, used, balance), *days[i + 1 :]))
        if entry.day > day:
            return Usage((*days[:i], _new_day(day, used, balance), *days[i:]))
    return usage  # not reached: the newest day is after `day`


def window(usage: Usage | None, today: date) -> list[DayUsage]:
    """The observed days among the last `WINDOW_DAYS` business days before `today` and `today`,
    oldest first (8 at most; a day without any balance event is not listed)."""
    if usage is None:
        return []
    start = today - _WINDOW
    return [d for d in usage.days if start <= d.day <= today]


def whole_units_up(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded up to a whole currency unit, at the currency's scale (12.01 -> 13.00)."""
    return quantize(amount.to_integral_value(ROUND_CEILING), currency)


def advice(
    usage: Usage | None,
    today: date,
    *,
    amount: Decimal,
    balance_at_trigger: Decimal,
    threshold: Decimal,
    currency: str,
    last_notice: date | None,
) -> Advice | None:
    """The notice `trigger_amount_too_low` when it is due on business day `today`, else None.

    Due when the top-up of `amount` (the Trigger Amount) leaves the balance at or below the
    threshold (`balance_at_trigger + amount <= threshold`), or when the highest daily usage in
    `window(usage, today)` is larger than `amount`; never within `NOTICE_INTERVAL_DAYS` of the
    last notice (nor before it). The recommendation is the highest daily usage rounded up to a
    whole unit, at least what lifts the balance at trigger above the threshold (by one minor
    unit, rounded up to a whole unit), and always above `amount` (else no notice)."""
    if last_notice is not None and today - last_notice < _NOTICE_INTERVAL:
        return None
    highest = max((d.usage for d in window(usage, today)), default=Decimal(0))
    if plus(balance_at_trigger, amount) <= threshold:
        reason = AdviceReason.BALANCE_STILL_AT_OR_BELOW_THRESHOLD
    elif highest > amount:
        reason = AdviceReason.USAGE_ABOVE_TRIGGER_AMOUNT
    else:
        return None
    minor = _UNIT.scaleb(-minor_unit_exponent(currency))
    lift = plus(minus(threshold, balance_at_trigger), minor)
    recommended = max(whole_units_up(highest, currency), whole_units_up(lift, currency))
    if recommended <= amount:
        return None
    return Advice(highest, recommended, reason)
