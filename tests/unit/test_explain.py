"""When may a customer next be topped up: the pure answer behind `auto-topup explain`."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from service.domain import rules
from service.domain.explain import (
    balance_at_or_below_threshold,
    next_top_up,
    partner_failure,
    start_of_business_day,
)
from service.domain.model import Credit, Origin, PaymentMethod, Wallet
from service.domain.reasons import NextCode
from service.domain.rules import Policy, Status
from tests.factories import balance, settings

POLICY = Policy()
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def wallet(
    now: datetime = NOW,
    *,
    amount: str | None = "50.00",
    balance_currency: str = "USD",
    **kw: object,
) -> Wallet:
    """A customer configured an hour before `now` (threshold 10.00 USD unless told), with a
    balance half an hour before `now` (none when amount is None)."""
    kw.setdefault("at", now - timedelta(hours=1))
    out = rules.apply_settings(Wallet("cust-1"), settings("cust-1", **kw), now, POLICY)  # type: ignore[arg-type]
    assert out.status is Status.APPLIED, out
    w = out.wallet
    if amount is not None:
        got = rules.apply_balance(
            w,
            balance("cust-1", amount, at=now - timedelta(minutes=30), currency=balance_currency),
            now,
            POLICY,
        )
        assert got.status is Status.APPLIED, got
        # What the rule claimed while applying this balance is not what this test is about:
        # the taken dates are passed to next_top_up explicitly.
        w = replace(got.wallet, attempt_dates=frozenset(), attempt_day_end=None)
    return w


def test_no_settings() -> None:
    nxt = next_top_up(Wallet("cust-1"), frozenset(), NOW, POLICY)
    assert nxt.code is NextCode.NO_SETTINGS
    assert nxt.not_before is None
    assert nxt.timezone == "UTC"
    assert nxt.business_date == date(2026, 11, 25)


def test_auto_trigger_off_is_never_even_with_a_low_balance_and_a_key_today() -> None:
    w = wallet(amount="-500.00", auto=False)
    for taken in (frozenset(), frozenset({date(2026, 11, 25)})):
        nxt = next_top_up(w, taken, NOW, POLICY)
        assert nxt.code is NextCode.AUTO_TRIGGER_OFF
        assert "Finance app enables auto-trigger" in nxt.sentence
        assert nxt.not_before is None


def test_auto_trigger_off_wins_over_a_balance_above_the_threshold() -> None:
    assert next_top_up(wallet(auto=False), frozenset(), NOW, POLICY).code is (
        NextCode.AUTO_TRIGGER_OFF
    )


def test_stripe_paused_waits_for_new_card_details() -> None:
    w = wallet(
        amount="1.00",
        method=PaymentMethod.STRIPE,
        origin=Origin.ONLINE_TOP_UP,
        card=("cus_123456789", "pm_123456789"),
    )
    paused = replace(w, stripe_paused=True)
    nxt = next_top_up(paused, frozenset(), NOW, POLICY)
    assert nxt.code is NextCode.STRIPE_PAUSED
    assert "new card details" in nxt.sentence
    # The same customer, not paused: the low balance makes the next balance event trigger.
    assert next_top_up(w, frozenset(), NOW, POLICY).code is NextCode.DUE_NOW


def test_currency_mismatch() -> None:
    w = wallet(amount="1.00", balance_currency="EUR")
    nxt = next_top_up(w, frozenset(), NOW, POLICY)
    assert nxt.code is NextCode.CURRENCY_MISMATCH
    assert "EUR" in nxt.sentence
    assert "USD" in nxt.sentence


def test_balance_unknown() -> None:
    nxt = next_top_up(wallet(amount=None), frozenset(), NOW, POLICY)
    assert nxt.code is NextCode.BALANCE_UNKNOWN
    assert "10.00 USD" in nxt.sentence


def test_above_threshold_names_the_threshold() -> None:
    nxt = next_top_up(wallet(amount="10.01"), frozenset(), NOW, POLICY)
    assert nxt.code is NextCode.ABOVE_THRESHOLD
    assert "as soon as a balance at or below 10.00 USD arrives" in nxt.sentence
    assert nxt.not_before is None


def test_balance_at_the_threshold_without_a_key_today_is_due_now() -> None:
    w = wallet(amount="10.00")
    yesterday = frozenset({date(2026, 11, 24)})
    nxt = next_top_up(w, yesterday, NOW, POLICY)
    assert nxt.code is NextCode.DUE_NOW
    assert nxt.not_before is None


def test_a_key_today_waits_for_the_next_business_day() -> None:
    w = wallet(amount="5.00")
    nxt = next_top_up(w, frozenset({date(2026, 11, 25)}), NOW, POLICY)
    assert nxt.code is NextCode.DAILY_KEY_TAKEN
    assert nxt.not_before == datetime(2026, 11, 26, tzinfo=UTC)
    assert nxt.next_business_date == date(2026, 11, 26)
    assert "2026-11-26T00:00:00+00:00" in nxt.sentence


def test_keys_taken_in_the_wallet_count_too() -> None:
    w = replace(wallet(amount="5.00"), attempt_dates=frozenset({date(2026, 11, 25)}))
    assert next_top_up(w, frozenset(), NOW, POLICY).code is NextCode.DAILY_KEY_TAKEN


def test_a_key_already_taken_for_tomorrow_is_skipped() -> None:
    taken = frozenset({date(2026, 11, 25), date(2026, 11, 26)})
    nxt = next_top_up(wallet(amount="5.00"), taken, NOW, POLICY)
    assert nxt.not_before == datetime(2026, 11, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timezone", "now", "today", "not_before"),
    [
        # America/New_York springs forward on Sunday 2026-03-08 at 02:00 (EST -5 -> EDT -4).
        ("America/New_York", "2026-03-07T17:00:00Z", "2026-03-07", "2026-03-08T05:00:00Z"),
        ("America/New_York", "2026-03-08T16:00:00Z", "2026-03-08", "2026-03-09T04:00:00Z"),
        # ... and falls back on Sunday 2026-11-01 at 02:00 (EDT -4 -> EST -5).
        ("America/New_York", "2026-10-31T16:00:00Z", "2026-10-31", "2026-11-01T04:00:00Z"),
        ("America/New_York", "2026-11-01T17:00:00Z", "2026-11-01", "2026-11-02T05:00:00Z"),
        # 22:00 local on 2026-11-01 is already 2026-11-02 in UTC: the local day counts.
        ("America/New_York", "2026-11-02T03:00:00Z", "2026-11-01", "2026-11-02T05:00:00Z"),
        # Asia/Kolkata, +05:30 all year: 01:30 local on the 26th is 20:00 UTC on the 25th.
        ("Asia/Kolkata", "2026-11-25T20:00:00Z", "2026-11-26", "2026-11-26T18:30:00Z"),
        ("Asia/Kolkata", "2026-11-25T12:00:00Z", "2026-11-25", "2026-11-25T18:30:00Z"),
        # America/Santiago springs forward at midnight: 2026-09-06 starts at 01:00 (-03).
        ("America/Santiago", "2026-09-05T16:00:00Z", "2026-09-05", "2026-09-06T04:00:00Z"),
    ],
)
def test_next_business_day_starts_at_local_midnight_across_dst(
    timezone: str, now: str, today: str, not_before: str
) -> None:
    at = datetime.fromisoformat(now)
    day = date.fromisoformat(today)
    w = wallet(at, amount="5.00", timezone=timezone)

    without = next_top_up(w, frozenset({day - timedelta(days=1)}), at, POLICY)
    assert without.code is NextCode.DUE_NOW
    assert without.business_date == day
    assert without.timezone == timezone

    nxt = next_top_up(w, frozenset({day}), at, POLICY)
    assert nxt.code is NextCode.DAILY_KEY_TAKEN
    assert nxt.business_date == day
    assert nxt.next_business_date == day + timedelta(days=1)
    assert nxt.not_before == datetime.fromisoformat(not_before)
    assert nxt.not_before is not None
    assert nxt.not_before > at
    assert timezone in nxt.sentence


def test_the_day_of_the_spring_change_is_23_hours_long() -> None:
    march8 = start_of_business_day(date(2026, 3, 8), "America/New_York")
    march9 = start_of_business_day(date(2026, 3, 9), "America/New_York")
    assert march9 - march8 == timedelta(hours=23)
    nov1 = start_of_business_day(date(2026, 11, 1), "America/New_York")
    nov2 = start_of_business_day(date(2026, 11, 2), "America/New_York")
    assert nov2 - nov1 == timedelta(hours=25)


def test_a_key_for_the_utc_date_is_not_the_customers_day() -> None:
    # 01:30 on the 26th in Kolkata: the key of the 25th (the UTC date) does not block today.
    at = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    w = wallet(at, amount="5.00", timezone="Asia/Kolkata")
    assert next_top_up(w, frozenset({date(2026, 11, 25)}), at, POLICY).code is NextCode.DUE_NOW


def test_settings_without_timezone_use_the_default() -> None:
    policy = Policy(default_timezone="Asia/Kolkata")
    at = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    w = wallet(at, amount="5.00")
    nxt = next_top_up(w, frozenset({date(2026, 11, 26)}), at, policy)
    assert nxt.timezone == "Asia/Kolkata"
    assert nxt.code is NextCode.DAILY_KEY_TAKEN
    assert nxt.not_before == datetime(2026, 11, 26, 18, 30, tzinfo=UTC)


def test_balance_at_or_below_threshold_counts_equal() -> None:
    assert balance_at_or_below_threshold(wallet(amount="10.00"), NOW, POLICY) is True
    assert balance_at_or_below_threshold(wallet(amount="-3.00"), NOW, POLICY) is True
    assert balance_at_or_below_threshold(wallet(amount="10.01"), NOW, POLICY) is False
    # Below, whatever else stops a top-up.
    assert balance_at_or_below_threshold(wallet(amount="1", auto=False), NOW, POLICY) is True
    assert balance_at_or_below_threshold(wallet(amount=None), NOW, POLICY) is None
    assert balance_at_or_below_threshold(Wallet("cust-1"), NOW, POLICY) is None


def test_partner_failure_asks_the_funding_rule() -> None:
    customer = wallet(amount="1.00", method=PaymentMethod.MASTER_ACCOUNT, partner_id="partner-1")
    partner = rules.apply_balance(
        Wallet("partner-1"), balance("partner-1", "150.00", at=NOW), NOW, POLICY
    ).wallet
    assert partner_failure(customer, partner, NOW) is None  # 150.00 covers 100.00
    spent = replace(partner, credits_out=(Credit(NOW, Decimal("60.00")),))
    assert partner_failure(customer, spent, NOW) == "partner_insufficient_funds"
    assert partner_failure(customer, Wallet("partner-1"), NOW) == "partner_balance_unknown"
    assert partner_failure(customer, None, NOW) == "partner_balance_unknown"
    assert partner_failure(wallet(amount="1.00"), partner, NOW) is None  # not master account


def test_pure_the_wallet_is_left_as_it_was() -> None:
    w = wallet(amount="5.00")
    before = replace(w)
    next_top_up(w, frozenset(), NOW, POLICY)
    assert w == before


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_top_up(Wallet("cust-1"), frozenset(), NOW.replace(tzinfo=None), POLICY)
