"""The threshold rule, the once-a-day rule and their guards, on plain data."""

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from service.domain import rules
from service.domain.model import Origin, PaymentMethod, Wallet
from service.domain.rails import Due
from service.domain.rails.master_account import fund_from_partner
from service.domain.rules import Decision, Policy, Status
from tests.factories import NOW, balance, settings

POLICY = Policy()
CARD = ("cus_1", "pm_1")


def configured(customer_id: str = "cust-1", **kw: object) -> Wallet:
    out = rules.apply_settings(
        Wallet(customer_id),
        settings(customer_id, **kw),  # type: ignore[arg-type]
        NOW,
        POLICY,
    )
    assert out.status is Status.APPLIED, out
    return out.wallet


def test_balance_equal_to_threshold_is_due() -> None:
    out = rules.apply_balance(configured(threshold="10.00"), balance(amount="10.00"), NOW, POLICY)
    assert out.decision is Decision.TRIGGERED
    assert out.topup is not None
    assert out.topup.amount == Decimal("100.00")
    assert out.topup.business_date == date(2026, 11, 25)


def test_balance_above_threshold_is_not_due() -> None:
    out = rules.apply_balance(configured(threshold="10.00"), balance(amount="10.01"), NOW, POLICY)
    assert out.status is Status.APPLIED
    assert out.decision is Decision.NOT_DUE
    assert out.topup is None


@pytest.mark.parametrize(
    ("threshold", "amount", "due"),
    [
        ("-50", "-50.00", True),
        ("-50", "-49.99", False),
        ("0", "0", True),
        ("0", "-0.01", True),
        ("0", "0.01", False),
    ],
)
def test_negative_and_zero_thresholds(threshold: str, amount: str, due: bool) -> None:
    out = rules.apply_balance(configured(threshold=threshold), balance(amount=amount), NOW, POLICY)
    assert (out.topup is not None) is due


def test_without_settings_nothing_triggers() -> None:
    out = rules.apply_balance(Wallet("cust-1"), balance(amount="-1000"), NOW, POLICY)
    assert out.status is Status.APPLIED
    assert out.topup is None
    assert out.reason == "no_settings"


def test_auto_trigger_off_never_triggers() -> None:
    out = rules.apply_balance(configured(auto=False), balance(amount="0"), NOW, POLICY)
    assert out.topup is None
    assert (out.decision, out.reason) == (Decision.BLOCKED, "auto_trigger_off")


def test_one_attempt_per_day_then_suppressed() -> None:
    first = rules.apply_balance(configured(), balance(amount="1"), NOW, POLICY)
    assert first.topup is not None
    later = NOW + timedelta(hours=3)
    second = rules.apply_balance(first.wallet, balance(amount="0.50", at=later), later, POLICY)
    assert second.topup is None
    assert (second.decision, second.reason) == (Decision.SUPPRESSED, "daily_key_taken")


def test_two_due_events_a_minute_apart_across_local_midnight_are_two_days() -> None:
    wallet = configured(timezone="Asia/Kolkata")
    before = datetime(2026, 11, 25, 18, 29, 30, tzinfo=UTC)  # 23:59:30 IST
    after = before + timedelta(minutes=1)  # 00:00:30 IST, next day
    first = rules.apply_balance(wallet, balance(amount="1", at=before), after, POLICY)
    second = rules.apply_balance(first.wallet, balance(amount="0.5", at=after), after, POLICY)
    assert first.topup is not None
    assert second.topup is not None
    assert (first.topup.business_date, second.topup.business_date) == (
        date(2026, 11, 25),
        date(2026, 11, 26),
    )


def test_business_day_follows_new_york_across_dst_end() -> None:
    # 2026-11-02 04:30 UTC is 23:30 EST on Nov 1 (after the change), still Nov 1.
    at = datetime(2026, 11, 2, 4, 30, tzinfo=UTC)
    wallet = configured(timezone="America/New_York", at=at - timedelta(hours=1))
    out = rules.apply_balance(wallet, balance(amount="1", at=at), at, POLICY)
    assert out.topup is not None
    assert out.topup.business_date == date(2026, 11, 1)


def test_default_timezone_is_the_policys() -> None:
    at = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    out = rules.apply_balance(
        configured(), balance(amount="1", at=at), at, Policy(default_timezone="Asia/Tokyo")
    )
    assert out.topup is not None
    assert out.topup.business_date == date(2026, 11, 26)


def test_event_too_far_in_the_future_is_rejected() -> None:
    out = rules.apply_balance(
        configured(), balance(amount="1", at=NOW + timedelta(minutes=6)), NOW, POLICY
    )
    assert (out.status, out.reason) == (Status.REJECTED, "future_dated")
    within = rules.apply_balance(
        configured(), balance(amount="1", at=NOW + timedelta(minutes=4)), NOW, POLICY
    )
    assert within.topup is not None


def test_old_business_day_updates_state_but_triggers_nothing() -> None:
    wallet = configured(at=NOW - timedelta(days=40))
    old = NOW - timedelta(days=30)
    out = rules.apply_balance(wallet, balance(amount="1", at=old), NOW, POLICY)
    assert out.status is Status.APPLIED
    assert out.topup is None
    assert out.reason == "old_business_date"
    assert out.wallet.balance is not None
    assert out.wallet.balance.amount == Decimal("1")


def test_previous_day_is_still_inside_the_window() -> None:
    yesterday = NOW - timedelta(days=1)
    out = rules.apply_balance(
        configured(at=yesterday), balance(amount="1", at=yesterday), NOW, POLICY
    )
    assert out.topup is not None
    assert out.topup.business_date == date(2026, 11, 24)


def test_stale_and_duplicate_balances_change_nothing() -> None:
    wallet = configured()
    first = rules.apply_balance(wallet, balance(amount="50", sequence=5), NOW, POLICY)
    for stale in (balance(amount="1", sequence=5), balance(amount="1", sequence=4)):
        out = rules.apply_balance(first.wallet, stale, NOW, POLICY)
        assert out.status is Status.STALE
        assert out.wallet == first.wallet
    dup = balance(amount="50", sequence=6)
    applied = rules.apply_balance(first.wallet, dup, NOW, POLICY)
    again = rules.apply_balance(applied.wallet, dup, NOW, POLICY)
    assert again.status is Status.STALE


def test_without_sequence_an_older_balance_is_stale() -> None:
    first = rules.apply_balance(configured(), balance(amount="50"), NOW, POLICY)
    out = rules.apply_balance(
        first.wallet, balance(amount="1", at=NOW - timedelta(seconds=1)), NOW, POLICY
    )
    assert out.status is Status.STALE


def test_stale_settings_version_changes_nothing() -> None:
    wallet = configured(version=3)
    out = rules.apply_settings(wallet, settings(version=3, trigger="5"), NOW, POLICY)
    assert out.status is Status.STALE
    out = rules.apply_settings(wallet, settings(version=2, trigger="5"), NOW, POLICY)
    assert out.status is Status.STALE
    out = rules.apply_settings(wallet, settings(version=4, trigger="5"), NOW, POLICY)
    assert out.status is Status.APPLIED
    assert out.wallet.settings is not None
    assert out.wallet.settings.trigger_amount == Decimal("5")


def test_turning_auto_trigger_on_below_threshold_is_due() -> None:
    wallet = configured(auto=False)
    low = rules.apply_balance(wallet, balance(amount="1"), NOW, POLICY).wallet
    out = rules.apply_settings(low, settings(auto=True), NOW, POLICY)
    assert out.topup is not None
    assert out.topup.balance_at_trigger == Decimal("1")


def test_raising_the_threshold_over_the_balance_is_due() -> None:
    wallet = rules.apply_balance(
        configured(threshold="10"), balance(amount="20"), NOW, POLICY
    ).wallet
    out = rules.apply_settings(wallet, settings(threshold="25"), NOW, POLICY)
    assert out.topup is not None
    lowered = rules.apply_settings(wallet, settings(threshold="5"), NOW, POLICY)
    assert lowered.topup is None


def test_changing_other_fields_is_not_a_trigger() -> None:
    wallet = rules.apply_balance(
        configured(threshold="10"), balance(amount="5"), NOW, POLICY
    ).wallet
    # The balance event already used today; a new day's settings change of the amount only:
    out = rules.apply_settings(
        replace(wallet, attempt_dates=frozenset()),
        settings(threshold="10", trigger="200"),
        NOW,
        POLICY,
    )
    assert out.status is Status.APPLIED
    assert out.topup is None


def test_stripe_settings_are_locked_for_the_finance_app() -> None:
    wallet = configured(method=PaymentMethod.STRIPE, origin=Origin.ONLINE_TOP_UP, card=CARD)
    changed = rules.apply_settings(
        wallet, settings(method=PaymentMethod.STRIPE, trigger="999"), NOW, POLICY
    )
    assert (changed.status, changed.reason) == (Status.REJECTED, "stripe_settings_locked")
    assert changed.wallet == wallet
    toggled = rules.apply_settings(
        wallet, settings(method=PaymentMethod.STRIPE, auto=False), NOW, POLICY
    )
    assert toggled.status is Status.APPLIED
    switched = rules.apply_settings(
        wallet, settings(method=PaymentMethod.CHEQUE_TT, trigger="999"), NOW, POLICY
    )
    assert switched.status is Status.APPLIED
    assert switched.wallet.card == wallet.card  # the card stays on record


def test_finance_app_may_choose_stripe_only_with_a_card_on_record() -> None:
    out = rules.apply_settings(configured(), settings(method=PaymentMethod.STRIPE), NOW, POLICY)
    assert (out.status, out.reason) == (Status.REJECTED, "stripe_card_missing")


def test_online_top_up_unpauses_stripe() -> None:
    wallet = replace(
        configured(method=PaymentMethod.STRIPE, origin=Origin.ONLINE_TOP_UP, card=CARD),
        stripe_paused=True,
    )
    blocked = rules.apply_balance(wallet, balance(amount="1"), NOW, POLICY)
    assert (blocked.decision, blocked.reason) == (Decision.BLOCKED, "stripe_paused")
    renewed = rules.apply_settings(
        blocked.wallet,
        settings(
            method=PaymentMethod.STRIPE,
            origin=Origin.ONLINE_TOP_UP,
            card=("cus_1", "pm_2"),
            at=NOW + timedelta(seconds=1),
        ),
        NOW + timedelta(seconds=1),
        POLICY,
    )
    assert renewed.wallet.stripe_paused is False
    assert renewed.wallet.card is not None
    assert renewed.wallet.card.stripe_payment_method_id == "pm_2"


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"trigger": "10.001"}, "invalid_amount_scale"),
        ({"trigger": "10.5", "currency": "JPY"}, "invalid_amount_scale"),
        ({"threshold": "1.0001", "currency": "KWD"}, "invalid_amount_scale"),
        ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
        (
            {
                "method": PaymentMethod.STRIPE,
                "origin": Origin.ONLINE_TOP_UP,
                "card": CARD,
                "trigger": "12.345",
                "currency": "KWD",
            },
            "invalid_amount_for_card",
        ),
        ({"method": PaymentMethod.MASTER_ACCOUNT, "partner_id": "cust-1"}, "partner_is_customer"),
    ],
)
def test_settings_validation(kw: dict[str, object], reason: str) -> None:
    out = rules.apply_settings(Wallet("cust-1"), settings(**kw), NOW, POLICY)  # type: ignore[arg-type]
    assert (out.status, out.reason) == (Status.REJECTED, reason)


def test_settings_currency_must_be_the_wallets() -> None:
    wallet = rules.apply_balance(
        Wallet("cust-1"), balance(amount="5", currency="EUR"), NOW, POLICY
    ).wallet
    out = rules.apply_settings(wallet, settings(currency="USD"), NOW, POLICY)
    assert (out.status, out.reason) == (Status.REJECTED, "currency_mismatch")


def test_jpy_and_kwd_amounts_pass_through_exactly() -> None:
    jpy = rules.apply_balance(
        configured(trigger="5000", threshold="100", currency="JPY"),
        balance(amount="99", currency="JPY"),
        NOW,
        POLICY,
    )
    assert jpy.topup is not None
    assert jpy.topup.amount == Decimal("5000")
    kwd = rules.apply_balance(
        configured(trigger="12.345", threshold="1.5", currency="KWD"),
        balance(amount="1.499", currency="KWD"),
        NOW,
        POLICY,
    )
    assert kwd.topup is not None
    assert kwd.topup.amount == Decimal("12.345")


# --- master account -----------------------------------------------------------------------


def _partner(amount: str, at: datetime = NOW - timedelta(minutes=1)) -> Wallet:
    return rules.apply_balance(
        Wallet("partner-1"), balance("partner-1", amount, at=at), NOW, POLICY
    ).wallet


def _due(customer_id: str, amount: str = "100.00") -> rules.Outcome:
    wallet = configured(
        customer_id, method=PaymentMethod.MASTER_ACCOUNT, partner_id="partner-1", trigger=amount
    )
    out = rules.apply_balance(wallet, balance(customer_id, "1"), NOW, POLICY)
    assert out.topup is not None
    return out


@dataclass(frozen=True)
class _Funding:
    partner: Wallet | None  # the partner's wallet after the credit (unchanged on failure)
    failure: str | None


def _fund(
    partner: Wallet | None, customer_id: str, now: datetime = NOW, amount: str = "100.00"
) -> _Funding:
    topup = _due(customer_id, amount).topup
    assert topup is not None
    due = Due(topup, now, partner, f"credit-{customer_id}", POLICY.credit_hold)
    settled = fund_from_partner(due)
    return _Funding(settled.changed[0] if settled.changed else partner, settled.reason)


def test_partner_funds_cover_the_credit() -> None:
    funding = _fund(_partner("150"), "c1")
    assert funding.failure is None
    assert funding.partner is not None
    assert rules.available_funds(funding.partner) == Decimal("50")
    assert [c.event_id for c in funding.partner.credits_out] == ["credit-c1"]


def test_two_customers_of_one_partner_cannot_overdraw_it() -> None:
    first = _fund(_partner("150"), "c1")
    second = _fund(first.partner, "c2")
    assert first.failure is None
    assert second.failure == "partner_insufficient_funds"


def test_unknown_partner_balance_fails() -> None:
    assert _fund(None, "c1").failure == "partner_balance_unknown"


def test_a_partner_balance_that_names_the_credit_releases_it() -> None:
    first = _fund(_partner("150"), "c1")
    assert first.partner is not None
    later = NOW + timedelta(seconds=5)
    # The wallet service applied the credit: its balance event names it.
    after = rules.apply_balance(
        first.partner, balance("partner-1", "50", at=later, caused_by="credit-c1"), later, POLICY
    ).wallet
    assert after.credits_out == ()
    assert rules.available_funds(after) == Decimal("50")


def test_a_later_partner_balance_without_caused_by_keeps_the_credit_reserved() -> None:
    """v1 forgot the credit here: the partner holds 100, A gets 60, the partner's wallet changes
    for another reason (99) before the wallet service applied A's credit: B must not get 60."""
    first = _fund(_partner("100"), "a", amount="60.00")
    assert first.partner is not None
    later = NOW + timedelta(seconds=5)
    other = rules.apply_balance(
        first.partner, balance("partner-1", "99", at=later), later, POLICY
    ).wallet
    assert rules.available_funds(other, later, POLICY) == Decimal("39")
    assert _fund(other, "b", later, amount="60.00").failure == "partner_insufficient_funds"


def test_a_stale_partner_balance_that_names_the_credit_still_releases_it() -> None:
    partner = rules.apply_balance(
        Wallet("partner-1"), balance("partner-1", "150", at=NOW, sequence=10), NOW, POLICY
    ).wallet
    first = _fund(partner, "c1")
    assert first.partner is not None
    # Sequence 9 is older than what we know (10), yet the wallet service applied the credit
    # by then, so the newer balance we hold includes it too.
    out = rules.apply_balance(
        first.partner,
        balance("partner-1", "50", at=NOW, sequence=9, caused_by="credit-c1"),
        NOW,
        POLICY,
    )
    assert out.status is Status.STALE
    assert out.wallet.credits_out == ()


def test_an_unnamed_credit_stops_counting_after_the_hold() -> None:
    first = _fund(_partner("100"), "a")
    assert first.partner is not None
    just_before = NOW + POLICY.credit_hold - timedelta(seconds=1)
    assert rules.available_funds(first.partner, just_before, POLICY) == Decimal("0")
    after = NOW + POLICY.credit_hold
    assert rules.available_funds(first.partner, after, POLICY) == Decimal("100")
    funded = _fund(first.partner, "b", after)
    assert funded.failure is None
    assert funded.partner is not None
    assert [c.event_id for c in funded.partner.credits_out] == ["credit-b"]


def test_a_repeated_event_is_stale_whenever_it_comes_back() -> None:
    first, second = balance(amount="5.00", at=NOW), balance(amount="50.00", at=NOW)
    wallet = configured()
    for event in (first, second):
        wallet = rules.apply_balance(wallet, event, NOW, POLICY).wallet
    for event in (first, second):  # both again, the older one included
        out = rules.apply_balance(wallet, event, NOW, POLICY)
        assert out.status is Status.STALE
        assert out.topup is None


def test_events_at_one_instant_are_ordered_by_event_id() -> None:
    low = balance(amount="1.00", at=NOW, event_id="b")
    high = balance(amount="90.00", at=NOW, event_id="a")
    wallet = rules.apply_balance(configured(), low, NOW, POLICY).wallet
    out = rules.apply_balance(wallet, high, NOW, POLICY)
    assert out.status is Status.STALE  # ("a" < "b"): the same verdict on every replay


def test_a_stale_sequence_still_counts_as_seen() -> None:
    wallet = rules.apply_balance(configured(), balance(amount="50", at=NOW), NOW, POLICY).wallet
    older = balance(amount="1", at=NOW - timedelta(hours=1), sequence=13)
    seen = rules.apply_balance(wallet, older, NOW, POLICY)
    assert seen.status is Status.STALE
    assert seen.wallet.balance is not None
    assert seen.wallet.balance.sequence == 13
    assert seen.wallet.balance.amount == Decimal("50")
    later = balance(amount="2", at=NOW + timedelta(seconds=1), sequence=12)
    assert rules.apply_balance(seen.wallet, later, NOW, POLICY).status is Status.STALE


def test_a_balance_dated_before_the_settings_in_effect_is_decided_at_their_time() -> None:
    """In event-time order, a late balance (dated 23:50) under settings made at 00:10 the next
    day (auto-trigger on) would have been known when those settings arrived: the top-up is
    theirs, on their business date, not on the day the balance is dated."""
    day = datetime(2026, 3, 10, 23, 50, tzinfo=UTC)
    turned_on = day + timedelta(minutes=20)
    off = configured(auto=False, at=day - timedelta(hours=1))
    on = rules.apply_settings(
        off, settings("cust-1", auto=True, at=turned_on), turned_on, POLICY
    ).wallet
    out = rules.apply_balance(on, balance(amount="1", at=day), turned_on, POLICY)
    assert out.topup is not None
    assert out.topup.business_date == date(2026, 3, 11)
