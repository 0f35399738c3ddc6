"""How much one top-up is (contract v2, "How much"): the amount mode, then `max_amount`, then
what is left of `monthly_cap` this month.

- `fixed`: the Trigger Amount (v1).
- `to_target`: `target_balance - balance_at_trigger`, rounded up to the currency's minor unit
  (for a card, up to the smallest step a card charge of that currency can carry).
- `cover_gap`: the smallest whole multiple of the Trigger Amount that brings the balance above
  the Limit Threshold (at least one).

A cap cuts the amount down (a cut to the month's cap is rounded down to what can be charged,
so the cap is never passed). A top-up cut to nothing, or below Stripe's minimum for a card, is
not made: `monthly_cap_reached`, and the day stays free.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from service.domain.model import AmountMode, Amounts, MonthSpend
from service.domain.money import card_amount_error, card_step, minor_unit
from service.domain.reasons import BlockReason


def month_of(day: date) -> str:
    """The calendar month (YYYY-MM) a business date counts in."""
    return f"{day.year:04d}-{day.month:02d}"


def spent_in(month: MonthSpend | None, key: str) -> Decimal:
    """What this service topped up in month `key` (nothing when the record is of another)."""
    if month is None or month.month != key:
        return Decimal(0)
    return month.spent


def _step(currency: str, card: bool) -> Decimal:
    return card_step(currency) if card else minor_unit(currency)


def _base(
    amounts: Amounts, trigger_amount: Decimal, threshold: Decimal, balance: Decimal, step: Decimal
) -> Decimal:
    if amounts.mode is AmountMode.TO_TARGET and amounts.target_balance is not None:
        gap = amounts.target_balance - balance
        return (gap / step).to_integral_value(ROUND_CEILING) * step
    if amounts.mode is AmountMode.COVER_GAP:
        times = ((threshold - balance) / trigger_amount).to_integral_value(ROUND_FLOOR) + 1
        return trigger_amount * max(times, Decimal(1))
    return trigger_amount


def reckon(
    amounts: Amounts,
    *,
    trigger_amount: Decimal,
    threshold: Decimal,
    balance: Decimal,
    currency: str,
    spent: Decimal,
    card: bool,
) -> Decimal | BlockReason:
    """The amount of a due top-up, or why none is made."""
    step = _step(currency, card)
    amount = _base(amounts, trigger_amount, threshold, balance, step)
    if amounts.max_amount is not None and amount > amounts.max_amount:
        amount = amounts.max_amount
    if amounts.monthly_cap is not None:
        left = amounts.monthly_cap - spent
        if amount > left:
            # Down to what can be charged: the cap is never passed.
            amount = (left / step).to_integral_value(ROUND_FLOOR) * step
            if amount <= 0 or (card and card_amount_error(amount, currency) is not None):
                return BlockReason.MONTHLY_CAP_REACHED
    if amount <= 0:
        return BlockReason.MONTHLY_CAP_REACHED
    if card and card_amount_error(amount, currency) is not None:
        return BlockReason.BELOW_CARD_MINIMUM
    return amount
