"""The threshold rule and the once-a-day rule, as pure functions.

Every function takes the wallet state and an event (plus `now` and the policy) and returns the
new state with what was decided. Nothing here reads a clock, a database or a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from service.domain.calendar import business_date, day_end, is_valid_timezone
from service.domain.model import (
    Balance,
    BalanceChanged,
    Card,
    CardTerms,
    Credit,
    Origin,
    PaymentMethod,
    Settings,
    SettingsUpdated,
    TopUp,
    Wallet,
)
from service.domain.money import card_amount_error, fits_minor_units
from service.domain.values import value


@dataclass(frozen=True, slots=True)
class Policy:
    default_timezone: str = "UTC"
    future_skew: timedelta = timedelta(minutes=5)
    # Events whose business date is older than `today - old_day_window_days` trigger nothing.
    old_day_window_days: int = 1
    # A partner credit that no balance event of the partner's wallet names in `caused_by`
    # stops being reserved after this long (measured on this service's clock).
    credit_hold: timedelta = timedelta(hours=48)


class Status(StrEnum):
    APPLIED = "applied"  # state changed (and maybe a top-up decided)
    STALE = "stale"  # older than, or the same as, what we know: no change
    REJECTED = "rejected"  # can never be applied: dead-lettered


class Decision(StrEnum):
    TRIGGERED = "triggered"
    SUPPRESSED = "suppressed"  # due, but today's daily key is taken
    BLOCKED = "blocked"  # would be due, but a rule stops it
    NOT_DUE = "not_due"


@value
class Outcome:
    wallet: Wallet
    status: Status
    decision: Decision = Decision.NOT_DUE
    reason: str | None = None  # reject reason, or why not triggered
    detail: str = ""
    topup: TopUp | None = None


def _future_dated(wallet: Wallet, at: datetime, now: datetime, policy: Policy) -> Outcome | None:
    """The rejection of an event dated further ahead than the allowed clock skew."""
    if at <= now + policy.future_skew:
        return None
    return _reject(
        wallet,
        "future_dated",
        f"occurred_at {at.isoformat()} is more than {policy.future_skew} ahead of "
        f"{now.isoformat()}",
    )


def _reject(wallet: Wallet, reason: str, detail: str) -> Outcome:
    return Outcome(wallet, Status.REJECTED, reason=reason, detail=detail)


# --- balances ---------------------------------------------------------------------------------


def _is_stale(
    highest: int | None, newest: tuple[datetime, str], event: tuple[str, int | None, datetime]
) -> bool:
    """Not newer: by counter (sequence/version) when the event has one and the wallet has seen
    one, else by (occurred_at, event_id) against the greatest applied. A repeated event is
    always stale, and two events at the same instant are ordered the same way on every pass."""
    event_id, counter, at = event
    if counter is not None and highest is not None:
        return counter <= highest
    return (at, event_id) <= newest


def _newest(old: tuple[datetime, str] | None, at: datetime, event_id: str) -> tuple[datetime, str]:
    return (at, event_id) if old is None else max(old, (at, event_id))


def _highest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def apply_balance(wallet: Wallet, event: BalanceChanged, now: datetime, policy: Policy) -> Outcome:
    too_early = _future_dated(wallet, event.occurred_at, now, policy)
    if too_early is not None:
        return too_early
    last = wallet.balance
    if last is not None and _is_stale(
        last.sequence,
        last.newest or (last.occurred_at, last.event_id),
        (event.event_id, event.sequence, event.occurred_at),
    ):
        # The highest sequence *seen* rises even so, so that staleness never changes its mind
        # when the same events come again. A credit it names is applied all the same: the
        # newer balance we know includes it.
        seen = replace(last, sequence=_highest(last.sequence, event.sequence))
        credits = _unreleased(wallet.credits_out, event.caused_by, now, policy)
        return Outcome(
            replace(wallet, balance=seen, credits_out=credits),
            Status.STALE,
            reason="stale_balance",
        )
    balance = Balance(
        event.balance,
        event.currency,
        event.occurred_at,
        _highest(last.sequence if last else None, event.sequence),
        event.event_id,
        _newest(last.newest if last else None, event.occurred_at, event.event_id),
    )
    credits = _unreleased(wallet.credits_out, event.caused_by, now, policy)
    # (the constructor, not dataclasses.replace: this runs for every balance event)
    updated = Wallet(
        wallet.customer_id,
        wallet.settings,
        wallet.card,
        wallet.stripe_paused,
        balance,
        credits,
        wallet.attempt_dates,
        wallet.card_terms,
        wallet.attempt_day_end,
    )
    # A balance dated before the settings in effect is judged under those settings: in
    # event-time order its decision is theirs, so it is dated when they were made.
    at = event.occurred_at
    settings = wallet.settings
    if settings is not None and settings.occurred_at > at:
        at = settings.occurred_at
    return _evaluate(
        updated,
        trigger_event_id=event.event_id,
        occurred_at=at,
        now=now,
        policy=policy,
        event_at=event.occurred_at,
    )


def _unreleased(
    credits: tuple[Credit, ...], caused_by: str | None, now: datetime, policy: Policy
) -> tuple[Credit, ...]:
    """The credits still reserved: not named by this balance event (a wallet's balance includes
    a credit from the event that names it on), and not past the hold."""
    if not credits:  # nearly every wallet: not a partner, or nothing outstanding
        return credits
    expired = now - policy.credit_hold
    return tuple(
        c
        for c in credits
        if c.issued_at > expired and (caused_by is None or c.event_id != caused_by)
    )


# --- settings ---------------------------------------------------------------------------------


def _settings_error(wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
    """Checks that need the wallet's state or facts the wire schema cannot express."""
    if not fits_minor_units(event.trigger_amount, event.currency):
        return (
            "invalid_amount_scale",
            f"trigger_amount {event.trigger_amount} has more decimals than {event.currency}",
        )
    if not fits_minor_units(event.limit_threshold, event.currency):
        return (
            "invalid_amount_scale",
            f"limit_threshold {event.limit_threshold} has more decimals than {event.currency}",
        )
    if event.payment_method is PaymentMethod.STRIPE:
        problem = card_amount_error(event.trigger_amount, event.currency)
        if problem is not None:
            return ("invalid_amount_for_card", problem)
    if event.timezone is not None and not is_valid_timezone(event.timezone):
        return ("invalid_timezone", f"unknown IANA timezone {event.timezone!r}")
    if (
        event.partner_id is not None
        and event.partner_id == event.customer_id
        and (event.payment_method is PaymentMethod.MASTER_ACCOUNT)
    ):
        return ("partner_is_customer", "a wallet cannot fund itself")
    if wallet.balance is not None and wallet.balance.currency != event.currency:
        return (
            "currency_mismatch",
            f"settings in {event.currency} for a wallet in {wallet.balance.currency}",
        )
    if event.origin is Origin.FINANCE_APP and event.payment_method is PaymentMethod.STRIPE:
        card = wallet.card
        if card is None:
            return (
                "stripe_card_missing",
                "the Finance app may choose Stripe only for a customer whose card is on "
                "record (saved during an online top-up)",
            )
        # Whatever the stored method is (since v2): a round trip through another method must
        # not let the Finance app charge the card an amount its owner never set.
        terms = wallet.card_terms
        if terms is None or not terms.same_amounts(
            event.trigger_amount, event.limit_threshold, event.currency
        ):
            card_set = (
                "not known (save the card again in an online top-up)"
                if terms is None
                else f"{terms.trigger_amount} / {terms.limit_threshold} {terms.currency}"
            )
            return (
                "stripe_settings_locked",
                "Trigger Amount and Limit Threshold of a Stripe customer are set during "
                f"online top-up; the Finance app cannot change them (the card's: {card_set}; "
                f"sent: {event.trigger_amount} / {event.limit_threshold} {event.currency})",
            )
    return None


def apply_settings(
    wallet: Wallet, event: SettingsUpdated, now: datetime, policy: Policy
) -> Outcome:
    too_early = _future_dated(wallet, event.occurred_at, now, policy)
    if too_early is not None:
        return too_early
    previous = wallet.settings
    if previous is not None and _is_stale(
        previous.version,
        previous.newest or (previous.occurred_at, previous.event_id),
        (event.event_id, event.version, event.occurred_at),
    ):
        seen = replace(previous, version=_highest(previous.version, event.version))
        stale = replace(wallet, settings=seen)
        if (
            event.origin is Origin.ONLINE_TOP_UP
            and _settings_error(wallet, event) is None
            and not _card_may_be_newer(wallet, previous, event)
        ):
            # Older than the settings in effect, but maybe the card's latest: the card and its
            # amounts are what the last online top-up set, whatever came from the Finance app.
            stale = _saved_card(stale, event)
        return Outcome(stale, Status.STALE, reason="stale_settings")
    error = _settings_error(wallet, event)
    if error is not None:
        return _reject(wallet, *error)

    settings = Settings(
        payment_method=event.payment_method,
        auto_trigger=event.auto_trigger,
        trigger_amount=event.trigger_amount,
        limit_threshold=event.limit_threshold,
        currency=event.currency,
        timezone=event.timezone,
        partner_id=event.partner_id,
        origin=event.origin,
        version=_highest(previous.version if previous else None, event.version),
        occurred_at=event.occurred_at,
        event_id=event.event_id,
        newest=_newest(previous.newest if previous else None, event.occurred_at, event.event_id),
    )
    updated = replace(wallet, settings=settings)
    if event.origin is Origin.ONLINE_TOP_UP:
        updated = _saved_card(updated, event)

    turned_on = event.auto_trigger and (previous is None or not previous.auto_trigger)
    raised = previous is not None and event.limit_threshold > previous.limit_threshold
    if not (turned_on or raised):
        return Outcome(updated, Status.APPLIED)
    return _evaluate(
        updated,
        trigger_event_id=event.event_id,
        occurred_at=event.occurred_at,
        now=now,
        policy=policy,
    )


def _card_may_be_newer(wallet: Wallet, applied: Settings, event: SettingsUpdated) -> bool:
    """A card saved before its time was recorded (v1, before migration 0005) was set by
    settings no later than those applied: a stale online top-up dated no later than them may
    be older than the card (a replay of an old one), so it must not replace it or lift a pause.
    One dated after every settings applied is after the card too."""
    if wallet.card is None or (wallet.card_terms and wallet.card_terms.newest):
        return False
    applied_at = applied.newest or (applied.occurred_at, applied.event_id)
    return (event.occurred_at, event.event_id) <= applied_at


def _saved_card(wallet: Wallet, event: SettingsUpdated) -> Wallet:
    """The card and its amounts from an online top-up, unless the card's are newer."""
    assert event.stripe_customer_id is not None
    assert event.stripe_payment_method_id is not None
    at = (event.occurred_at, event.event_id)
    terms = wallet.card_terms
    if terms is not None and terms.newest is not None and at <= terms.newest:
        return wallet
    return replace(
        wallet,
        card=Card(event.stripe_customer_id, event.stripe_payment_method_id),
        card_terms=CardTerms(event.trigger_amount, event.limit_threshold, event.currency, at),
        stripe_paused=False,  # new card details: Stripe top-ups may go again
    )


# --- the rule ---------------------------------------------------------------------------------


def _blocked(wallet: Wallet, reason: str, decision: Decision = Decision.BLOCKED) -> Outcome:
    return Outcome(wallet, Status.APPLIED, decision=decision, reason=reason)


def _evaluate(
    wallet: Wallet,
    *,
    trigger_event_id: str,
    occurred_at: datetime,
    now: datetime,
    policy: Policy,
    event_at: datetime | None = None,
) -> Outcome:
    """`occurred_at`: when the decision is dated; `event_at`: the triggering event's own time
    (earlier for a late balance), which the old-day guard judges."""
    settings, balance = wallet.settings, wallet.balance
    if settings is None:
        return _blocked(wallet, "no_settings", Decision.NOT_DUE)
    if balance is None:
        return _blocked(wallet, "balance_unknown", Decision.NOT_DUE)
    threshold, amount, currency = (
        settings.limit_threshold,
        settings.trigger_amount,
        settings.currency,
    )
    if settings.payment_method is PaymentMethod.STRIPE:
        # A card is charged only what its owner set in the latest online top-up.
        terms = wallet.card_terms
        if terms is None:
            return _blocked(wallet, "stripe_card_terms_unknown")
        threshold, amount, currency = terms.limit_threshold, terms.trigger_amount, terms.currency
    if balance.amount > threshold:
        return _blocked(wallet, "above_threshold", Decision.NOT_DUE)
    if not settings.auto_trigger:
        return _blocked(wallet, "auto_trigger_off")
    if balance.currency != currency:
        return _blocked(wallet, "currency_mismatch")
    timezone = settings.timezone or policy.default_timezone
    day = business_date(occurred_at, timezone)
    oldest = business_date(now, timezone) - timedelta(days=policy.old_day_window_days)
    if business_date(event_at or occurred_at, timezone) < oldest:
        return _blocked(wallet, "old_business_date")
    if settings.payment_method is PaymentMethod.STRIPE and wallet.stripe_paused:
        return _blocked(wallet, "stripe_paused")
    if day in wallet.attempt_dates or (
        # Since v2: the previous attempt's business day, in the timezone it used, must be over
        # (a change of timezone never opens a second day early).
        wallet.attempt_day_end is not None and occurred_at < wallet.attempt_day_end
    ):
        return _blocked(wallet, "daily_key_taken", Decision.SUPPRESSED)
    topup = TopUp(
        customer_id=wallet.customer_id,
        business_date=day,
        trigger_event_id=trigger_event_id,
        balance_at_trigger=balance.amount,
        limit_threshold=threshold,
        amount=amount,
        currency=currency,
        payment_method=settings.payment_method,
        partner_id=settings.partner_id,
        card=wallet.card,
    )
    ends = day_end(day, timezone)
    if wallet.attempt_day_end is not None:
        ends = max(ends, wallet.attempt_day_end)
    claimed = replace(wallet, attempt_dates=wallet.attempt_dates | {day}, attempt_day_end=ends)
    return Outcome(claimed, Status.APPLIED, decision=Decision.TRIGGERED, topup=topup)


# --- master account ---------------------------------------------------------------------------


@value
class Funding:
    partner: Wallet | None  # the partner's wallet after the credit (unchanged on failure)
    failure: str | None = None
    detail: str = ""


def available_funds(
    partner: Wallet, now: datetime | None = None, policy: Policy | None = None
) -> Decimal | None:
    """The partner's last known balance minus every credit this service issued from it that
    the wallet service has not shown as applied yet (and whose hold has not passed at `now`;
    without `now`, every reserved credit counts)."""
    if partner.balance is None:
        return None
    credits = partner.credits_out
    if now is not None:
        credits = _unreleased(credits, None, now, policy or Policy())
    return partner.balance.amount - sum((c.amount for c in credits), Decimal(0))


def fund_from_partner(
    partner: Wallet | None, topup: TopUp, now: datetime, policy: Policy, credit_event_id: str
) -> Funding:
    """Issues the top-up from the partner's wallet if what it can cover allows; the credit is
    reserved under `credit_event_id` (the credit-issued event's id) until released."""
    if partner is None or partner.balance is None:
        return Funding(
            partner, "partner_balance_unknown", f"no balance known for partner {topup.partner_id}"
        )
    if partner.balance.currency != topup.currency:
        return Funding(
            partner,
            "partner_currency_mismatch",
            f"partner wallet is in {partner.balance.currency}, top-up in {topup.currency}",
        )
    reserved = _unreleased(partner.credits_out, None, now, policy)
    available = partner.balance.amount - sum((c.amount for c in reserved), Decimal(0))
    if available < topup.amount:
        return Funding(
            partner,
            "partner_insufficient_funds",
            f"partner {topup.partner_id} can cover {available} (balance "
            f"{partner.balance.amount} less {len(reserved)} credits not yet applied), "
            f"top-up needs {topup.amount}",
        )
    credit = Credit(now, topup.amount, credit_event_id)
    return Funding(replace(partner, credits_out=(*reserved, credit)))
