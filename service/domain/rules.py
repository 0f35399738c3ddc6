"""The threshold rule and the once-a-day rule, as pure functions.

Every function takes the wallet state and an event (plus `now` and the policy) and returns the
new state with what was decided. Nothing here reads a clock, a database or a broker.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from service.domain.advisor import advised
from service.domain.amounts import reckon
from service.domain.calendar import business_date, day_end, is_valid_timezone
from service.domain.cards import card_may_be_newer, saved_card
from service.domain.model import (
    Balance,
    BalanceChanged,
    Origin,
    Settings,
    SettingsUpdated,
    TopUp,
    Wallet,
)
from service.domain.money import fits_minor_units
from service.domain.months import month_of, spent_in
from service.domain.newer import highest as _highest
from service.domain.newer import is_stale as _is_stale
from service.domain.newer import newest as _newest
from service.domain.notices import cap_blocked
from service.domain.outcomes import Decision, Outcome, Policy, Status
from service.domain.rails import Terms
from service.domain.reasons import BlockReason, DeadLetterReason, StaleReason
from service.domain.reservations import available_funds as _available
from service.domain.reservations import unreleased
from service.domain.usage import Usage, observe

__all__ = ["Decision", "Outcome", "Policy", "Status", "apply_balance", "apply_settings"]


def _future_dated(wallet: Wallet, at: datetime, now: datetime, policy: Policy) -> Outcome | None:
    """The rejection of an event dated further ahead than the allowed clock skew."""
    if at <= now + policy.future_skew:
        return None
    return _reject(
        wallet,
        DeadLetterReason.FUTURE_DATED,
        f"occurred_at {at.isoformat()} is more than {policy.future_skew} ahead of "
        f"{now.isoformat()}",
    )


def _reject(wallet: Wallet, reason: str, detail: str) -> Outcome:
    return Outcome(wallet, Status.REJECTED, reason=reason, detail=detail)


# --- balances ---------------------------------------------------------------------------------


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
        credits = unreleased(wallet.credits_out, event.caused_by, now, policy.credit_hold)
        return Outcome(
            replace(wallet, balance=seen, credits_out=credits),
            Status.STALE,
            reason=StaleReason.STALE_BALANCE,
        )
    balance = Balance(
        event.balance,
        event.currency,
        event.occurred_at,
        _highest(last.sequence if last else None, event.sequence),
        event.event_id,
        _newest(last.newest if last else None, event.occurred_at, event.event_id),
    )
    credits = unreleased(wallet.credits_out, event.caused_by, now, policy.credit_hold)
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
        wallet.month,
        wallet.open_invoices,
        wallet.advised_on,
        _observed(wallet, last, event, policy),
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


def _observed(
    wallet: Wallet, last: Balance | None, event: BalanceChanged, policy: Policy
) -> Usage | None:
    """The customer's usage with this newer balance counted (customers with settings only: a
    wallet nobody tops up needs no advice)."""
    settings = wallet.settings
    if settings is None:
        return wallet.usage
    day = business_date(event.occurred_at, settings.timezone or policy.default_timezone)
    return observe(wallet.usage, day, last.amount if last is not None else None, event.balance)


# --- settings ---------------------------------------------------------------------------------


def _settings_error(
    wallet: Wallet, event: SettingsUpdated, policy: Policy
) -> tuple[str, str] | None:
    """Checks that need the wallet's state or facts the wire schema cannot express; then the
    chosen rail's own."""
    amounts = event.amounts
    for name, amount in (
        ("trigger_amount", event.trigger_amount),
        ("limit_threshold", event.limit_threshold),
        ("target_balance", amounts.target_balance),
        ("max_amount", amounts.max_amount),
        ("monthly_cap", amounts.monthly_cap),
    ):
        if amount is not None and not fits_minor_units(amount, event.currency):
            return (
                DeadLetterReason.INVALID_AMOUNT_SCALE,
                f"{name} {amount} has more decimals than {event.currency}",
            )
    if event.timezone is not None and not is_valid_timezone(event.timezone):
        return (DeadLetterReason.INVALID_TIMEZONE, f"unknown IANA timezone {event.timezone!r}")
    if wallet.balance is not None and wallet.balance.currency != event.currency:
        return (
            DeadLetterReason.CURRENCY_MISMATCH,
            f"settings in {event.currency} for a wallet in {wallet.balance.currency}",
        )
    fallback = event.fallback_method
    return policy.rails[event.payment_method].settings_error(wallet, event) or (
        None if fallback is None else policy.rails[fallback].settings_error(wallet, event)
    )


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
            and _settings_error(wallet, event, policy) is None
            and not card_may_be_newer(wallet, previous, event)
        ):
            # Older than the settings in effect, but maybe the card's latest: the card and its
            # amounts are what the last online top-up set, whatever came from the Finance app.
            stale = saved_card(stale, event)
        return Outcome(stale, Status.STALE, reason=StaleReason.STALE_SETTINGS)
    error = _settings_error(wallet, event, policy)
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
        amounts=event.amounts,
        fallback_method=event.fallback_method,
        max_open_invoices=event.max_open_invoices,
    )
    updated = replace(wallet, settings=settings)
    if event.origin is Origin.ONLINE_TOP_UP:
        updated = saved_card(updated, event)

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
        return _blocked(wallet, BlockReason.NO_SETTINGS, Decision.NOT_DUE)
    if balance is None:
        return _blocked(wallet, BlockReason.BALANCE_UNKNOWN, Decision.NOT_DUE)
    rail = policy.rails.serving(settings)
    terms = rail.terms(wallet)
    if not isinstance(terms, Terms):
        return _blocked(wallet, terms)
    if balance.amount > terms.threshold:
        return _blocked(wallet, BlockReason.ABOVE_THRESHOLD, Decision.NOT_DUE)
    if not settings.auto_trigger:
        return _blocked(wallet, BlockReason.AUTO_TRIGGER_OFF)
    if balance.currency != terms.currency:
        return _blocked(wallet, BlockReason.CURRENCY_MISMATCH)
    timezone = settings.timezone or policy.default_timezone
    day = business_date(occurred_at, timezone)
    oldest = business_date(now, timezone) - timedelta(days=policy.old_day_window_days)
    if business_date(event_at or occurred_at, timezone) < oldest:
        return _blocked(wallet, BlockReason.OLD_BUSINESS_DATE)
    stopped = rail.paused(wallet) or _day_taken(wallet, day, occurred_at)
    if stopped is not None:
        suppressed = stopped in _SUPPRESSING
        return _blocked(wallet, stopped, Decision.SUPPRESSED if suppressed else Decision.BLOCKED)
    amount = reckon(
        terms.amounts,
        trigger_amount=terms.amount,
        threshold=terms.threshold,
        balance=balance.amount,
        currency=terms.currency,
        spent=spent_in(wallet.month, month_of(day)),
        card=terms.card,
    )
    if isinstance(amount, BlockReason):
        return _not_made(wallet, amount, day, terms)
    outcome = _claimed(wallet, replace(terms, amount=amount), day, timezone, trigger_event_id)
    assert outcome.topup is not None
    told, notices = advised(outcome.wallet, outcome.topup, terms.amount)
    return replace(outcome, wallet=told, notices=notices) if notices else outcome


def _not_made(wallet: Wallet, reason: BlockReason, day: date, terms: Terms) -> Outcome:
    """A due top-up whose amount cannot be made; the day stays free (a new month, or new
    settings, may allow one). Only the cap's block tells of the cap."""
    if reason is not BlockReason.MONTHLY_CAP_REACHED:  # a card cannot take the amount
        return _blocked(wallet, reason)
    capped, notices = cap_blocked(wallet, day, terms.amounts.monthly_cap, terms.currency)
    return Outcome(capped, Status.APPLIED, Decision.BLOCKED, reason=reason, notices=notices)


# Stops that are suppressions (the top-up is due, but waits): the rest are blocks.
_SUPPRESSING = frozenset({BlockReason.DAILY_KEY_TAKEN, BlockReason.INVOICE_OPEN})


def _day_taken(wallet: Wallet, day: date, occurred_at: datetime) -> str | None:
    if day in wallet.attempt_dates or (
        # Since v2: the previous attempt's business day, in the timezone it used, must be over
        # (a change of timezone never opens a second day early).
        wallet.attempt_day_end is not None and occurred_at < wallet.attempt_day_end
    ):
        return BlockReason.DAILY_KEY_TAKEN
    return None


def _claimed(wallet: Wallet, terms: Terms, day: date, timezone: str, trigger: str) -> Outcome:
    """The top-up decided, with today's daily key taken on the wallet."""
    settings, balance = wallet.settings, wallet.balance
    assert settings is not None
    assert balance is not None
    topup = TopUp(
        customer_id=wallet.customer_id,
        business_date=day,
        trigger_event_id=trigger,
        balance_at_trigger=balance.amount,
        limit_threshold=terms.threshold,
        amount=terms.amount,
        currency=terms.currency,
        payment_method=settings.payment_method,
        partner_id=settings.partner_id,
        card=wallet.card,
        amount_mode=terms.amounts.mode,
        fallback_method=settings.fallback_method,
    )
    ends = day_end(day, timezone)
    if wallet.attempt_day_end is not None:
        ends = max(ends, wallet.attempt_day_end)
    claimed = replace(wallet, attempt_dates=wallet.attempt_dates | {day}, attempt_day_end=ends)
    return Outcome(claimed, Status.APPLIED, decision=Decision.TRIGGERED, topup=topup)


# --- master account ---------------------------------------------------------------------------


def available_funds(
    partner: Wallet, now: datetime | None = None, policy: Policy | None = None
) -> Decimal | None:
    """What a partner's wallet can cover (see `reservations.available_funds`); without `now`,
    every reserved credit counts."""
    hold = (policy or Policy()).credit_hold if now is not None else None
    return _available(partner, now, hold)
