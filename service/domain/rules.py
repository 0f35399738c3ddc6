"""The threshold rule and the once-a-day rule, as pure functions.

Every function takes the wallet state and an event (plus `now` and the policy) and returns the
new state with what was decided. Nothing here reads a clock, a database or a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from service.domain.calendar import business_date, is_valid_timezone
from service.domain.model import (
    Balance,
    BalanceChanged,
    Card,
    Credit,
    Origin,
    PaymentMethod,
    Settings,
    SettingsUpdated,
    TopUp,
    Wallet,
)
from service.domain.money import fits_card_amount, fits_minor_units
from service.domain.values import value


@dataclass(frozen=True, slots=True)
class Policy:
    default_timezone: str = "UTC"
    future_skew: timedelta = timedelta(minutes=5)
    # Events whose business date is older than `today - old_day_window_days` trigger nothing.
    old_day_window_days: int = 1


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
        # when the same events come again.
        seen = replace(last, sequence=_highest(last.sequence, event.sequence))
        return Outcome(replace(wallet, balance=seen), Status.STALE, reason="stale_balance")
    balance = Balance(
        event.balance,
        event.currency,
        event.occurred_at,
        _highest(last.sequence if last else None, event.sequence),
        event.event_id,
        _newest(last.newest if last else None, event.occurred_at, event.event_id),
    )
    # Credit issued before this balance is already reflected in it.
    credits = wallet.credits_out
    if credits:
        credits = tuple(c for c in credits if c.issued_at > event.occurred_at)
    # (the constructor, not dataclasses.replace: this runs for every balance event)
    updated = Wallet(
        wallet.customer_id,
        wallet.settings,
        wallet.card,
        wallet.stripe_paused,
        balance,
        credits,
        wallet.attempt_dates,
    )
    return _evaluate(
        updated,
        trigger_event_id=event.event_id,
        occurred_at=event.occurred_at,
        now=now,
        policy=policy,
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
    if event.payment_method is PaymentMethod.STRIPE and not fits_card_amount(
        event.trigger_amount, event.currency
    ):
        return (
            "invalid_amount_for_card",
            f"a card cannot be charged exactly {event.trigger_amount} {event.currency}",
        )
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
        current = wallet.settings
        if (
            current is not None
            and current.payment_method is PaymentMethod.STRIPE
            and (
                event.trigger_amount != current.trigger_amount
                or event.limit_threshold != current.limit_threshold
            )
        ):
            return (
                "stripe_settings_locked",
                "Trigger Amount and Limit Threshold of a Stripe customer are set during "
                "online top-up; the Finance app cannot change them",
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
        return Outcome(replace(wallet, settings=seen), Status.STALE, reason="stale_settings")
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
    card, paused = wallet.card, wallet.stripe_paused
    if event.origin is Origin.ONLINE_TOP_UP:
        assert event.stripe_customer_id is not None
        assert event.stripe_payment_method_id is not None
        card = Card(event.stripe_customer_id, event.stripe_payment_method_id)
        paused = False  # new card details: Stripe top-ups may go again
    updated = replace(wallet, settings=settings, card=card, stripe_paused=paused)

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
    wallet: Wallet, *, trigger_event_id: str, occurred_at: datetime, now: datetime, policy: Policy
) -> Outcome:
    settings, balance = wallet.settings, wallet.balance
    if settings is None:
        return _blocked(wallet, "no_settings", Decision.NOT_DUE)
    if balance is None:
        return _blocked(wallet, "balance_unknown", Decision.NOT_DUE)
    if balance.amount > settings.limit_threshold:
        return _blocked(wallet, "above_threshold", Decision.NOT_DUE)
    if not settings.auto_trigger:
        return _blocked(wallet, "auto_trigger_off")
    if balance.currency != settings.currency:
        return _blocked(wallet, "currency_mismatch")
    timezone = settings.timezone or policy.default_timezone
    day = business_date(occurred_at, timezone)
    if day < business_date(now, timezone) - timedelta(days=policy.old_day_window_days):
        return _blocked(wallet, "old_business_date")
    if settings.payment_method is PaymentMethod.STRIPE and wallet.stripe_paused:
        return _blocked(wallet, "stripe_paused")
    if day in wallet.attempt_dates:
        return _blocked(wallet, "daily_key_taken", Decision.SUPPRESSED)
    topup = TopUp(
        customer_id=wallet.customer_id,
        business_date=day,
        trigger_event_id=trigger_event_id,
        balance_at_trigger=balance.amount,
        limit_threshold=settings.limit_threshold,
        amount=settings.trigger_amount,
        currency=settings.currency,
        payment_method=settings.payment_method,
        partner_id=settings.partner_id,
        card=wallet.card,
    )
    claimed = replace(wallet, attempt_dates=wallet.attempt_dates | {day})
    return Outcome(claimed, Status.APPLIED, decision=Decision.TRIGGERED, topup=topup)


# --- master account ---------------------------------------------------------------------------


@value
class Funding:
    partner: Wallet | None  # the partner's wallet after the credit (unchanged on failure)
    failure: str | None = None
    detail: str = ""


def available_funds(partner: Wallet) -> Decimal | None:
    """The partner's last known balance minus what we issued from it since that balance."""
    if partner.balance is None:
        return None
    return partner.balance.amount - sum((c.amount for c in partner.credits_out), Decimal(0))


def fund_from_partner(partner: Wallet | None, topup: TopUp, now: datetime) -> Funding:
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
    available = available_funds(partner)
    assert available is not None
    if available < topup.amount:
        return Funding(
            partner,
            "partner_insufficient_funds",
            f"partner {topup.partner_id} can cover {available}, top-up needs {topup.amount}",
        )
    credited = replace(partner, credits_out=(*partner.credits_out, Credit(now, topup.amount)))
    return Funding(credited)
