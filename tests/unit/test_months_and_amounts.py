"""The v2 amounts at their edges: a month's cap across a change of timezone, blocks that are
not the cap's, amounts a card cannot take, and arithmetic at the contract's 36 digits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

from hypothesis import given
from hypothesis import settings as search
from hypothesis import strategies as st

from service.domain import rules
from service.domain.amounts import reckon
from service.domain.calendar import business_date, day_end
from service.domain.model import (
    AmountMode,
    Amounts,
    MonthSpend,
    Origin,
    PaymentMethod,
    TopUp,
    Wallet,
)
from service.domain.months import keep, month_of, spent_in
from service.domain.notices import spend
from service.domain.reasons import BlockReason
from service.domain.rules import Decision, Policy, Status
from tests.factories import balance, settings

POLICY = Policy()
CAP = Decimal("150.00")
WEST, EAST = "Etc/GMT+12", "Pacific/Kiritimati"  # UTC-12 and UTC+14: 26 hours apart


def _set(wallet: Wallet, at: datetime, timezone: str, amounts: Amounts) -> Wallet:
    event = settings("cust-1", trigger="100.00", threshold="10.00", timezone=timezone, at=at)
    out = rules.apply_settings(wallet, replace(event, amounts=amounts), at, POLICY)
    assert out.status is Status.APPLIED, out
    return out.wallet


def _low(wallet: Wallet, at: datetime, amount: str = "5.00") -> rules.Outcome:
    return rules.apply_balance(wallet, balance(amount=amount, at=at), at, POLICY)


def _made(outcome: rules.Outcome, month: str) -> tuple[TopUp, Wallet]:
    """The top-up the outcome made, counted in its month as the batch settles it."""
    topup = outcome.topup
    assert topup is not None, outcome
    assert month_of(topup.business_date) == month
    return topup, spend(outcome.wallet, topup, CAP)[0]


def test_a_timezone_change_across_the_date_line_never_passes_the_monthly_cap() -> None:
    """November's top-up, a move east into December and one there, then back west into
    November: what is left of November's cap is 50.00, not 150.00."""
    start = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # 2026-11-29 00:00 at UTC-12
    wallet = _set(Wallet("cust-1"), start - timedelta(hours=1), WEST, Amounts(monthly_cap=CAP))
    topup, wallet = _made(_low(wallet, start), "2026-11")
    assert topup.amount == Decimal("100.00")

    east_at = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)  # 2026-12-01 02:30 at UTC+14
    moved = _set(wallet, east_at - timedelta(minutes=1), EAST, Amounts(monthly_cap=CAP))
    _, wallet = _made(_low(moved, east_at, "4.00"), "2026-12")

    west_at = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)  # 2026-11-30 22:30 at UTC-12
    back = _set(wallet, west_at - timedelta(minutes=1), WEST, Amounts(monthly_cap=CAP))
    topup, wallet = _made(_low(back, west_at, "3.00"), "2026-11")
    assert topup.amount == Decimal("50.00")  # November's cap, cut to what is left
    assert spent_in(wallet.month, "2026-11") == CAP
    assert spent_in(wallet.month, "2026-12") == Decimal("100.00")


MONTHS = st.sampled_from(["2026-10", "2026-11", "2026-12", "2027-01"])


@given(st.lists(st.tuples(MONTHS, st.integers(0, 500)), max_size=12))
def test_keep_holds_the_two_latest_months_and_never_loses_one_of_them(
    writes: list[tuple[str, int]],
) -> None:
    months: MonthSpend | None = None
    expected: dict[str, Decimal] = {}
    for key, spent in writes:
        months = keep(months, MonthSpend(key, Decimal(spent)))
        expected[key] = Decimal(spent)
    latest = sorted(expected, reverse=True)[:2]
    for key in expected:
        kept = spent_in(months, key)
        assert kept == (expected[key] if key in latest else Decimal(0))
    chain = []
    while months is not None:
        chain.append(months.month)
        months = months.earlier
    assert chain == latest


def _card_wallet(at: datetime, amounts: Amounts) -> Wallet:
    event = settings(
        method=PaymentMethod.STRIPE, origin=Origin.ONLINE_TOP_UP, card=("cus_1", "pm_1"), at=at
    )
    out = rules.apply_settings(Wallet("cust-1"), replace(event, amounts=amounts), at, POLICY)
    assert out.status is Status.APPLIED, out
    return out.wallet


def test_an_amount_below_the_cards_minimum_is_no_cap_notice() -> None:
    at = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    target = Amounts(
        AmountMode.TO_TARGET, target_balance=Decimal("10.20"), monthly_cap=Decimal("1000.00")
    )
    out = _low(_card_wallet(at, target), at + timedelta(minutes=1), "10.00")  # 0.20 < 0.50
    assert out.decision is Decision.BLOCKED
    assert out.reason == BlockReason.BELOW_CARD_MINIMUM
    assert out.notices == ()
    assert out.wallet.month is None  # nothing counted, no cap notice remembered


def _reckon(amounts: Amounts, balance: str, card: bool = False, **kw: str) -> object:
    return reckon(
        amounts,
        trigger_amount=Decimal(kw.get("trigger", "1.00")),
        threshold=Decimal(kw.get("threshold", "10.00")),
        balance=Decimal(balance),
        currency="USD",
        spent=Decimal(0),
        card=card,
    )


def test_an_amount_above_stripes_maximum_has_its_own_reason() -> None:
    target = Amounts(AmountMode.TO_TARGET, target_balance=Decimal("2000000.00"))
    assert _reckon(target, "0.00", card=True) == BlockReason.ABOVE_CARD_MAXIMUM
    assert _reckon(target, "1000000.01", card=True) == Decimal("999999.99")  # the largest


def test_amounts_are_exact_at_the_contracts_36_digits_whatever_the_context() -> None:
    target = Amounts(AmountMode.TO_TARGET, target_balance=Decimal("999999999999999999.99"))
    high = "999999999999999999.999999999999999999"
    with localcontext(prec=28):
        to_target = _reckon(target, "-0.000000000000000001")
        cover = _reckon(
            Amounts(AmountMode.COVER_GAP), "0", trigger="0.000000000000000003", threshold=high
        )
    # The gap is 999999999999999999.990000000000000001: up to the next cent.
    assert to_target == Decimal("1000000000000000000.00")
    # Floor(threshold / trigger) + 1 multiples of the trigger: just above the threshold.
    assert cover == Decimal("1000000000000000000.000000000000000002")


# One cheque customer whose cap is one Trigger Amount, moving between the zones farthest apart
# around a month's end: the month's top-ups never pass the cap, whatever the moves. Each step
# moves (or stays), lets a zone's midnight pass (or not), and sends a low balance.
ZONES = [WEST, EAST, "UTC"]
STEPS = st.lists(
    st.tuples(st.sampled_from(ZONES), st.sampled_from([None, *ZONES])), min_size=1, max_size=6
)


@search(max_examples=1000, deadline=None)
@given(STEPS)
def test_moves_across_the_date_line_never_pass_the_monthly_cap(
    steps: list[tuple[str, str | None]],
) -> None:
    now = datetime(2026, 11, 30, 11, 30, tzinfo=UTC)  # 2026-11-29 at UTC-12, 12-01 at UTC+14
    cap = Decimal("100.00")
    zone = WEST
    wallet = _set(Wallet("cust-1"), now, zone, Amounts(monthly_cap=cap))
    made: dict[str, Decimal] = {}
    for move, midnight in steps:
        if move != zone:
            now += timedelta(seconds=1)
            zone = move
            wallet = _set(wallet, now, zone, Amounts(monthly_cap=cap))
        if midnight is not None:
            now = day_end(business_date(now, midnight), midnight)
        now += timedelta(seconds=1)
        outcome = _low(wallet, now)
        wallet = outcome.wallet
        if outcome.topup is not None:
            month = month_of(outcome.topup.business_date)
            made[month] = made.get(month, Decimal(0)) + outcome.topup.amount
            assert made[month] <= cap, (month, made)
            wallet = spend(wallet, outcome.topup, cap)[0]
