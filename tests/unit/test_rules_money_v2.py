"""Contract v2's money rules on plain data: the card's own amounts, timezone changes, Stripe's
charge limits. (Partner reservations are in test_rules.py; the stateful model test searches
for sequences that break them all.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from service.domain import rules
from service.domain.calendar import day_end
from service.domain.model import Origin, PaymentMethod, Wallet
from service.domain.money import card_amount_error
from service.domain.rules import Decision, Policy, Status
from tests.factories import balance, settings

POLICY = Policy()
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
CARD = ("cus_1", "pm_1")


def _apply(wallet: Wallet, **kw: object) -> rules.Outcome:
    kw.setdefault("at", T0)
    return rules.apply_settings(wallet, settings("cust-1", **kw), T0 + timedelta(hours=20), POLICY)  # type: ignore[arg-type]


def _online(
    wallet: Wallet, trigger: str = "50.00", threshold: str = "10.00", **kw: object
) -> Wallet:
    out = _apply(
        wallet,
        method=PaymentMethod.STRIPE,
        origin=Origin.ONLINE_TOP_UP,
        card=CARD,
        trigger=trigger,
        threshold=threshold,
        **kw,
    )
    assert out.status is Status.APPLIED, out
    return out.wallet


def test_a_round_trip_through_cheque_cannot_change_the_cards_amounts() -> None:
    """The issue's sequence 1: online top-up 50/10, the Finance app sends cheque 5000/4000
    (accepted), then stripe 5000/4000: rejected whole, and no charge of 5000 ever."""
    wallet = _online(Wallet("cust-1"))
    cheque = _apply(
        wallet,
        method=PaymentMethod.CHEQUE_TT,
        trigger="5000.00",
        threshold="4000.00",
        at=T0 + timedelta(minutes=1),
    )
    assert cheque.status is Status.APPLIED
    back = _apply(
        cheque.wallet,
        method=PaymentMethod.STRIPE,
        trigger="5000.00",
        threshold="4000.00",
        at=T0 + timedelta(minutes=2),
    )
    assert back.status is Status.REJECTED
    assert back.reason == "stripe_settings_locked"
    assert back.wallet == cheque.wallet  # nothing half-applied
    # A balance of 3999 then raises an invoice (the stored method is cheque), not a charge.
    out = rules.apply_balance(
        back.wallet, balance(amount="3999", at=T0 + timedelta(minutes=3)), T0, POLICY
    )
    assert out.topup is not None
    assert out.topup.payment_method is PaymentMethod.CHEQUE_TT


def test_the_finance_app_may_switch_back_to_stripe_with_the_cards_own_amounts() -> None:
    wallet = _online(Wallet("cust-1"))
    cheque = _apply(
        wallet, method=PaymentMethod.CHEQUE_TT, trigger="5000.00", at=T0 + timedelta(minutes=1)
    )
    back = _apply(
        cheque.wallet,
        method=PaymentMethod.STRIPE,
        trigger="50.00",
        threshold="10.00",
        at=T0 + timedelta(minutes=2),
    )
    assert back.status is Status.APPLIED
    out = rules.apply_balance(
        back.wallet, balance(amount="9", at=T0 + timedelta(minutes=3)), T0, POLICY
    )
    assert out.topup is not None
    assert out.topup.amount == Decimal("50.00")


@pytest.mark.parametrize(
    ("trigger", "threshold", "currency"),
    [("50.01", "10.00", "USD"), ("50.00", "10.01", "USD"), ("50", "10", "JPY")],
)
def test_any_other_amounts_are_locked_whatever_the_stored_method(
    trigger: str, threshold: str, currency: str
) -> None:
    wallet = _online(Wallet("cust-1"))
    out = _apply(
        wallet,
        method=PaymentMethod.STRIPE,
        trigger=trigger,
        threshold=threshold,
        currency=currency,
        at=T0 + timedelta(minutes=1),
    )
    assert out.reason in ("stripe_settings_locked", "currency_mismatch")
    assert out.status is Status.REJECTED


def test_a_new_online_top_up_sets_new_amounts_for_the_card() -> None:
    wallet = _online(Wallet("cust-1"))
    wallet = _online(wallet, trigger="80.00", threshold="20.00", at=T0 + timedelta(minutes=1))
    ok = _apply(
        wallet,
        method=PaymentMethod.STRIPE,
        trigger="80.00",
        threshold="20.00",
        at=T0 + timedelta(minutes=2),
        auto=False,
    )
    assert ok.status is Status.APPLIED


def test_a_card_whose_amounts_are_unknown_cannot_be_chosen_by_the_finance_app() -> None:
    wallet = _online(Wallet("cust-1"))
    legacy = Wallet("cust-1", card=wallet.card)  # a card saved before v2 kept no amounts
    out = _apply(legacy, method=PaymentMethod.STRIPE)
    assert out.status is Status.REJECTED
    assert out.reason == "stripe_settings_locked"
    assert "online top-up" in out.detail


def test_a_timezone_change_never_opens_a_second_day_early() -> None:
    """The issue's sequence 3: charged at 23:00Z in UTC; at 23:10Z the Finance app sets
    Pacific/Kiritimati (UTC+14, already the next date); a balance at 23:20Z is on a new
    business date there, yet the UTC day of the first attempt is not over."""
    day = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    wallet = _online(Wallet("cust-1"), at=day - timedelta(hours=1))
    first = rules.apply_balance(wallet, balance(amount="5", at=day), day, POLICY)
    assert first.decision is Decision.TRIGGERED
    assert first.wallet.attempt_day_end == datetime(2026, 3, 11, tzinfo=UTC)
    moved = rules.apply_settings(
        first.wallet,
        settings(
            "cust-1",
            method=PaymentMethod.STRIPE,
            origin=Origin.ONLINE_TOP_UP,
            card=CARD,
            trigger="50.00",
            threshold="10.00",
            timezone="Pacific/Kiritimati",
            at=day + timedelta(minutes=10),
        ),
        day + timedelta(minutes=10),
        POLICY,
    )
    assert moved.status is Status.APPLIED
    at = day + timedelta(minutes=20)
    second = rules.apply_balance(moved.wallet, balance(amount="4", at=at), at, POLICY)
    assert second.decision is Decision.SUPPRESSED
    assert second.reason == "daily_key_taken"
    # Once the UTC day of the first attempt is over, the next attempt may go (on Kiritimati's
    # 2026-03-11, the date the suppressed balance was on).
    later = datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC)
    third = rules.apply_balance(second.wallet, balance(amount="3", at=later), later, POLICY)
    assert third.decision is Decision.TRIGGERED
    assert third.topup is not None
    assert third.topup.business_date.isoformat() == "2026-03-11"


def test_day_end_is_the_next_local_midnight_also_across_dst() -> None:
    assert day_end(datetime(2026, 3, 10).date(), "UTC") == datetime(2026, 3, 11, tzinfo=UTC)
    # New York: 2026-03-08 is 23 hours long (DST starts at 02:00); its end is 04:00Z.
    ny = day_end(datetime(2026, 3, 8).date(), "America/New_York")
    assert ny == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    # Santiago skips midnight when DST starts (2026-09-06 00:00 -> 01:00): the day after
    # 2026-09-05 starts at the change, 04:00Z.
    cl = day_end(datetime(2026, 9, 5).date(), "America/Santiago")
    assert cl == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount", "currency", "ok"),
    [
        ("0.50", "USD", True),
        ("0.49", "USD", False),
        ("0.10", "USD", False),
        ("0.30", "GBP", True),
        ("0.29", "GBP", False),
        ("50", "JPY", True),
        ("49", "JPY", False),
        ("999999.99", "USD", True),
        ("1000000.00", "USD", False),
        ("99999999", "JPY", True),
        ("100000000", "JPY", False),
        ("0.01", "KES", True),  # not in Stripe's table: one minor unit is the floor here
        ("12.340", "KWD", True),
        ("12.345", "KWD", False),  # Stripe's KWD amounts end in 0
    ],
)
def test_card_amounts_within_stripes_limits(amount: str, currency: str, ok: bool) -> None:
    assert (card_amount_error(Decimal(amount), currency) is None) is ok


def test_online_top_up_below_stripes_minimum_is_rejected_at_the_door() -> None:
    out = _apply(
        Wallet("cust-1"),
        method=PaymentMethod.STRIPE,
        origin=Origin.ONLINE_TOP_UP,
        card=CARD,
        trigger="0.10",
    )
    assert out.status is Status.REJECTED
    assert out.reason == "invalid_amount_for_card"
    assert "minimum" in out.detail


def test_a_late_online_top_up_still_sets_the_cards_amounts() -> None:
    """The online top-up (new card, 20.00/10.00, dated T) arrives after a Finance app update
    dated T+5 s that re-sent the old card's amounts (50.00/10.00): the card is charged what its
    owner set last, 20.00 on the new card, whichever arrived first."""
    wallet = _online(Wallet("cust-1"), at=T0 - timedelta(hours=1))
    finance = _apply(
        wallet, method=PaymentMethod.STRIPE, trigger="50.00", at=T0 + timedelta(seconds=5)
    )
    assert finance.status is Status.APPLIED
    late = rules.apply_settings(
        finance.wallet,
        settings(
            "cust-1",
            method=PaymentMethod.STRIPE,
            origin=Origin.ONLINE_TOP_UP,
            card=("cus_1", "pm_new"),
            trigger="20.00",
            threshold="10.00",
            at=T0,
        ),
        T0 + timedelta(seconds=6),
        POLICY,
    )
    assert late.status is Status.STALE  # as settings
    assert late.wallet.card is not None
    assert late.wallet.card.stripe_payment_method_id == "pm_new"
    out = rules.apply_balance(
        late.wallet, balance(amount="9", at=T0 + timedelta(seconds=7)), T0, POLICY
    )
    assert out.topup is not None
    assert out.topup.amount == Decimal("20.00")
    assert out.topup.card is not None
    assert out.topup.card.stripe_payment_method_id == "pm_new"


def test_an_older_online_top_up_never_replaces_the_cards_newer_amounts() -> None:
    wallet = _online(Wallet("cust-1"), trigger="80.00", at=T0)
    older = rules.apply_settings(
        wallet,
        settings(
            "cust-1",
            method=PaymentMethod.STRIPE,
            origin=Origin.ONLINE_TOP_UP,
            card=("cus_1", "pm_old"),
            trigger="20.00",
            at=T0 - timedelta(minutes=1),
        ),
        T0,
        POLICY,
    )
    assert older.status is Status.STALE
    assert older.wallet.card_terms == wallet.card_terms


def test_a_late_balance_older_than_the_window_triggers_nothing() -> None:
    """Settings from yesterday (no turn-on, no raise), then a balance dated three days ago,
    newer than the last known one: the old-day guard judges the event's own date."""
    now = T0 + timedelta(days=1)
    wallet = rules.apply_settings(
        Wallet("cust-1"),
        settings("cust-1", at=T0 - timedelta(days=5)),
        now,
        POLICY,
    ).wallet
    wallet = rules.apply_balance(
        wallet, balance(amount="50", at=T0 - timedelta(days=4)), now, POLICY
    ).wallet
    wallet = rules.apply_settings(
        wallet, settings("cust-1", at=T0, threshold="10.00"), now, POLICY
    ).wallet
    out = rules.apply_balance(wallet, balance(amount="1", at=T0 - timedelta(days=2)), now, POLICY)
    assert out.status is Status.APPLIED
    assert out.decision is Decision.BLOCKED
    assert out.reason == "old_business_date"


def test_a_replayed_old_online_top_up_never_replaces_a_card_saved_before_v2() -> None:
    """A card saved by v1 has no recorded time (migration 0005 could not know it). Replaying
    an online top-up of months ago must not bring its old card and amounts back, nor lift a
    pause; one dated after every settings applied still sets the card (stale by version)."""
    current = _online(Wallet("cust-1"), trigger="200.00", threshold="20.00", version=5)
    assert current.card_terms is not None
    v1 = replace(current, card_terms=replace(current.card_terms, newest=None), stripe_paused=True)
    old = _apply(
        v1,
        method=PaymentMethod.STRIPE,
        origin=Origin.ONLINE_TOP_UP,
        card=("cus_1", "pm_old"),
        trigger="900.00",
        threshold="500.00",
        version=2,
        at=T0 - timedelta(days=300),
    )
    assert old.status is Status.STALE
    assert old.wallet.card == v1.card
    assert old.wallet.card_terms == v1.card_terms
    assert old.wallet.stripe_paused is True

    later = _apply(
        v1,
        method=PaymentMethod.STRIPE,
        origin=Origin.ONLINE_TOP_UP,
        card=("cus_1", "pm_new"),
        trigger="300.00",
        threshold="30.00",
        version=3,
        at=T0 + timedelta(minutes=5),
    )
    assert later.status is Status.STALE
    assert later.wallet.card is not None
    assert later.wallet.card.stripe_payment_method_id == "pm_new"
    assert later.wallet.stripe_paused is False
