"""Why a customer was not topped up, and when it may next be: pure answers for `auto-topup explain`.

Nothing here reads a clock, a database or a broker: the caller passes the wallet, the business
dates whose daily key is taken and `now`. The rule itself is not restated here: the answer comes
from asking `rules.apply_balance` what a balance event arriving now would come to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from service.domain import rules
from service.domain.calendar import business_date, zone
from service.domain.model import BalanceChanged, PaymentMethod, TopUp, Wallet
from service.domain.rails import Due
from service.domain.rails.master_account import fund_from_partner
from service.domain.reasons import BlockReason, NextCode
from service.domain.values import value

# The event id of the imaginary balance events put to the rule (never stored, never published).
_PROBE_EVENT_ID = "auto-topup-explain-probe"


@value
class NextTopUp:
    """When the customer may next be topped up, and why not sooner."""

    code: NextCode
    sentence: str
    timezone: str  # the customer's business-day timezone (the default when settings name none)
    business_date: date  # today, in that timezone
    # The earliest instant a top-up may happen, when that is later than now (daily_key_taken).
    not_before: datetime | None = None
    next_business_date: date | None = None


def customer_timezone(wallet: Wallet, policy: rules.Policy) -> str:
    settings = wallet.settings
    return settings.timezone if settings and settings.timezone else policy.default_timezone


def start_of_business_day(day: date, timezone: str) -> datetime:
    """The first instant (UTC) whose business date in `timezone` is `day`: local midnight, or
    the end of the DST gap when midnight does not exist that day."""
    # fold=0: a midnight inside a DST gap takes the offset before the gap, which makes it the
    # instant the gap starts; a repeated midnight (clocks back over it) its first occurrence.
    return datetime.combine(day, time(0), tzinfo=zone(timezone)).astimezone(UTC)


def next_free_business_day(today: date, taken: frozenset[date]) -> date:
    day = today + timedelta(days=1)
    while day in taken:  # a key can exist for tomorrow (events up to the skew ahead)
        day += timedelta(days=1)
    return day


def _probe(
    wallet: Wallet,
    taken: frozenset[date],
    amount: Decimal,
    currency: str,
    now: datetime,
    policy: rules.Policy,
) -> rules.Outcome:
    """What the rule decides for a balance event of `amount` arriving now."""
    # Without the last balance, the probe is never stale; without credits, nothing else changes.
    probe_wallet = replace(wallet, balance=None, credits_out=(), attempt_dates=taken)
    event = BalanceChanged(_PROBE_EVENT_ID, now, wallet.customer_id, currency, amount)
    return rules.apply_balance(probe_wallet, event, now, policy)


def balance_at_or_below_threshold(
    wallet: Wallet, now: datetime, policy: rules.Policy
) -> bool | None:
    """Whether the last known balance is at or below the threshold, as the rule compares them
    (None without settings or balance)."""
    if wallet.settings is None or wallet.balance is None:
        return None
    balance = wallet.balance
    outcome = _probe(wallet, frozenset(), balance.amount, balance.currency, now, policy)
    return outcome.reason != BlockReason.ABOVE_THRESHOLD


def partner_failure(
    wallet: Wallet, partner: Wallet | None, now: datetime, policy: rules.Policy | None = None
) -> str | None:
    """For a master-account customer: the `top-up-failed` reason its partner's wallet would
    give to a top-up made now (None: the partner covers it, or not a master-account customer).
    """
    s = wallet.settings
    if s is None or s.payment_method is not PaymentMethod.MASTER_ACCOUNT or s.partner_id is None:
        return None
    topup = TopUp(
        customer_id=wallet.customer_id,
        business_date=now.date(),  # plays no part in funding
        trigger_event_id=_PROBE_EVENT_ID,
        balance_at_trigger=s.limit_threshold,
        limit_threshold=s.limit_threshold,
        amount=s.trigger_amount,
        currency=s.currency,
        payment_method=s.payment_method,
        partner_id=s.partner_id,
    )
    hold = (policy or rules.Policy()).credit_hold
    return fund_from_partner(Due(topup, now, partner, _PROBE_EVENT_ID, hold)).reason


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount} {currency}"


@dataclass(frozen=True, slots=True)
class _Answer:
    """Builds the answers of one question: the customer's timezone and today are fixed."""

    timezone: str
    today: date

    def __call__(
        self, code: NextCode, sentence: str, not_before: datetime | None = None
    ) -> NextTopUp:
        next_day = business_date(not_before, self.timezone) if not_before else None
        return NextTopUp(code, sentence, self.timezone, self.today, not_before, next_day)


def next_top_up(
    wallet: Wallet, taken: frozenset[date], now: datetime, policy: rules.Policy
) -> NextTopUp:
    """When `wallet` may next be topped up, given the business dates whose daily key is taken."""
    if now.tzinfo is None:
        raise ValueError("naive datetime: now needs an offset")
    taken = taken | wallet.attempt_dates
    timezone = customer_timezone(wallet, policy)
    answer = _Answer(timezone, business_date(now, timezone))
    settings, balance = wallet.settings, wallet.balance
    if settings is None:
        return answer(
            NextCode.NO_SETTINGS,
            "Never, until payment settings arrive (from the Finance app, or from the "
            "customer's online top-up by card).",
        )
    threshold = _money(settings.limit_threshold, settings.currency)
    low_balance = f"as soon as a balance at or below {threshold} arrives"

    # A balance event at the threshold, arriving now, in the wallet's currency: the most a
    # balance event could do today. Whatever stops it stops every balance event.
    currency = balance.currency if balance else settings.currency
    probe = _probe(wallet, taken, settings.limit_threshold, currency, now, policy)
    stopped = _stopped(probe.reason, currency, settings.currency, answer)
    if stopped is not None:
        return stopped
    if probe.reason == BlockReason.DAILY_KEY_TAKEN:
        return _day_taken(wallet, taken, answer, low_balance)
    if probe.decision is not rules.Decision.TRIGGERED:
        # A rule this module does not know yet: say what the rule said.
        return answer(
            NextCode.OTHER,
            f"Not now: the rule says {probe.decision.value} ({probe.reason}) for a balance at "
            "the threshold arriving now.",
        )
    if balance is None:
        return answer(NextCode.BALANCE_UNKNOWN, f"No balance seen yet: {low_balance}.")
    last = _money(balance.amount, balance.currency)
    if balance_at_or_below_threshold(wallet, now, policy) is False:
        return answer(
            NextCode.ABOVE_THRESHOLD,
            f"When the balance runs low: {low_balance} (the last known is {last}).",
        )
    return answer(
        NextCode.DUE_NOW,
        f"With the next balance event: the last known balance {last} is already at or below "
        f"{threshold} and today's daily key ({answer.today.isoformat()}) is free.",
    )


def _stopped(
    reason: str | None, currency: str, settings_currency: str, answer: _Answer
) -> NextTopUp | None:
    """The answer when a rule stops every top-up until something changes (None: none does)."""
    if reason == BlockReason.AUTO_TRIGGER_OFF:
        return answer(
            NextCode.AUTO_TRIGGER_OFF,
            "Never, until the Finance app enables auto-trigger.",
        )
    if reason == BlockReason.STRIPE_PAUSED:
        return answer(
            NextCode.STRIPE_PAUSED,
            "Not by Stripe until the customer's online top-up brings new card details: the "
            "last charge failed hard (or the Finance app switches to another method).",
        )
    if reason == BlockReason.CURRENCY_MISMATCH:
        return answer(
            NextCode.CURRENCY_MISMATCH,
            f"Never while the wallet is in {currency} and the settings in "
            f"{settings_currency}: fix the settings' currency.",
        )
    return None


def _day_taken(
    wallet: Wallet, taken: frozenset[date], answer: _Answer, low_balance: str
) -> NextTopUp:
    """Today's daily key is taken: from the start of the next free business day."""
    today, timezone = answer.today, answer.timezone
    next_day = next_free_business_day(today, taken)
    start = start_of_business_day(next_day, timezone)
    if wallet.attempt_day_end is not None and wallet.attempt_day_end > start:
        # The last attempt's day, in the timezone it used, ends later (a timezone change).
        start = wallet.attempt_day_end
        next_day = business_date(start, timezone)
    local = start.astimezone(zone(timezone))
    return answer(
        NextCode.DAILY_KEY_TAKEN,
        f"Not today: the daily key of {today.isoformat()} is taken (one top-up a day). "
        f"From the start of {next_day.isoformat()} in {timezone} "
        f"({local.isoformat()}, {start.isoformat()}), {low_balance}.",
        start,
    )
