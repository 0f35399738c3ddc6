"""The Trigger Amount advisor: usage per business day (`service/domain/usage.py`), its binary
form (`usage_codec.py`) and the notice `trigger_amount_too_low`."""

from __future__ import annotations

import ast
import inspect
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from service.domain import usage as usage_module
from service.domain import usage_codec
from service.domain.money import minor_unit_exponent
from service.domain.reasons import AdviceReason
from service.domain.usage import (
    NOTICE_INTERVAL_DAYS,
    WINDOW_DAYS,
    Advice,
    DayUsage,
    Usage,
    advice,
    observe,
    window,
)
from service.domain.usage_codec import pack, unpack

DAY = date(2026, 11, 25)
D = Decimal


def days_of(u: Usage) -> list[tuple[date, str, str]]:
    return [(d.day, str(d.usage), str(d.low)) for d in u.days]


def feed(events: list[tuple[date, str]], start: Usage | None = None) -> Usage:
    """Observe balances in the given order, each one's previous balance the one before."""
    u = start
    previous: Decimal | None = None
    for day, balance in events:
        u = observe(u, day, previous, D(balance))
        previous = D(balance)
    assert u is not None
    return u


def exact(a: Decimal) -> tuple[int, tuple[int, ...], int | str]:
    return a.as_tuple()  # sign, digits, exponent: 1.0 and 1.00 differ here


# --- observe ---------------------------------------------------------------------------------


def test_the_first_balance_adds_no_usage_and_is_the_low() -> None:
    u = observe(None, DAY, None, D("100.00"))
    assert days_of(u) == [(DAY, "0.00", "100.00")]


def test_decreases_add_up_and_increases_are_not_usage() -> None:
    u = feed([(DAY, "100.00"), (DAY, "70.00"), (DAY, "500.00"), (DAY, "480.50"), (DAY, "20.00")])
    assert days_of(u) == [(DAY, "510.00", "20.00")]  # 30 + 19.50 + 460.50


def test_the_low_is_the_lowest_balance_of_the_day() -> None:
    u = feed([(DAY, "10.00"), (DAY, "-5.00"), (DAY, "300.00")])
    assert days_of(u) == [(DAY, "15.00", "-5.00")]


def test_an_event_that_changes_nothing_returns_the_same_value() -> None:
    u = feed([(DAY, "10.00"), (DAY, "5.00")])
    assert observe(u, DAY, D("5.00"), D("8.00")) is u
    assert observe(u, DAY, D("5.00"), D("5.00")) is u


def test_a_new_day_starts_at_zero_usage() -> None:
    u = feed([(DAY, "100.00"), (DAY, "60.00"), (DAY + timedelta(days=1), "90.00")])
    assert days_of(u) == [(DAY, "40.00", "60.00"), (DAY + timedelta(days=1), "0.00", "90.00")]


def test_a_new_day_drops_the_days_more_than_seven_before_it() -> None:
    events = [(DAY + timedelta(days=i), str(100 - i)) for i in range(10)]
    u = feed(events)
    assert [d.day for d in u.days] == [DAY + timedelta(days=i) for i in range(2, 10)]
    assert len(u.days) == WINDOW_DAYS + 1


def test_a_late_event_inside_the_window_adds_to_its_day() -> None:
    u = feed([(DAY, "100.00"), (DAY + timedelta(days=3), "50.00")])
    late = observe(u, DAY, D("50.00"), D("45.00"))
    assert days_of(late) == [(DAY, "5.00", "45.00"), (DAY + timedelta(days=3), "50.00", "50.00")]
    between = observe(u, DAY + timedelta(days=1), D("50.00"), D("40.00"))
    assert [d.day for d in between.days] == [DAY, DAY + timedelta(days=1), DAY + timedelta(3)]
    assert days_of(between)[1] == (DAY + timedelta(days=1), "10.00", "40.00")


def test_a_late_event_older_than_the_window_is_ignored() -> None:
    u = feed([(DAY, "100.00")])
    assert observe(u, DAY - timedelta(days=WINDOW_DAYS + 1), D("100.00"), D("1.00")) is u
    kept = observe(u, DAY - timedelta(days=WINDOW_DAYS), D("100.00"), D("1.00"))
    assert days_of(kept)[0] == (DAY - timedelta(days=WINDOW_DAYS), "99.00", "1.00")


def test_window_lists_the_last_seven_days_and_today() -> None:
    u = feed([(DAY + timedelta(days=i), str(100 - i)) for i in range(8)])
    today = DAY + timedelta(days=5)
    assert [d.day for d in window(u, today)] == [DAY + timedelta(days=i) for i in range(6)]
    assert [d.day for d in window(u, DAY + timedelta(days=14))] == [DAY + timedelta(days=7)]
    assert window(u, DAY + timedelta(days=15)) == []
    assert window(None, DAY) == []


# --- advice ----------------------------------------------------------------------------------


def heavy_week(per_day: str) -> Usage:
    """The seven days before DAY, each one using `per_day` of a balance of 1000."""
    after = str(D("1000") - D(per_day))
    return feed(
        [(DAY - timedelta(days=i), b) for i in range(WINDOW_DAYS, 0, -1) for b in ("1000", after)]
    )


def advise(u: Usage | None, **kw: object) -> Advice | None:
    args: dict[str, object] = {
        "amount": D("100.00"),
        "balance_at_trigger": D("10.00"),
        "threshold": D("20.00"),
        "currency": "USD",
        "last_notice": None,
    }
    args.update(kw)
    return advice(u, DAY, **args)  # type: ignore[arg-type]


def test_usage_above_the_trigger_amount_gives_a_notice_rounded_up() -> None:
    got = advise(heavy_week("120.01"))
    assert got == Advice(D("120.01"), D("121.00"), AdviceReason.USAGE_ABOVE_TRIGGER_AMOUNT)
    assert exact(got.recommended_trigger_amount) == exact(D("121.00"))


def test_usage_at_the_trigger_amount_gives_none() -> None:
    assert advise(heavy_week("100.00")) is None
    assert advise(heavy_week("99.99")) is None


def test_a_whole_usage_is_not_rounded_further() -> None:
    got = advise(heavy_week("150.00"))
    assert got is not None
    assert got.recommended_trigger_amount == D("150")


def test_balance_still_at_or_below_the_threshold_after_the_top_up() -> None:
    got = advise(None, balance_at_trigger=D("-80.00"), threshold=D("20.00"))  # -80 + 100 = 20
    assert got == Advice(D(0), D("101.00"), AdviceReason.BALANCE_STILL_AT_OR_BELOW_THRESHOLD)
    assert advise(None, balance_at_trigger=D("-79.99"), threshold=D("20.00")) is None


def test_the_recommendation_lifts_the_balance_above_the_threshold() -> None:
    # Usage 130 a day, but the balance at trigger is 150 below the threshold.
    got = advise(heavy_week("130.00"), balance_at_trigger=D("-130.50"), threshold=D("20.00"))
    assert got is not None
    assert got.reason == AdviceReason.BALANCE_STILL_AT_OR_BELOW_THRESHOLD
    assert got.observed_daily_usage == D("130.00")
    assert got.recommended_trigger_amount == D("151")  # 150.50 + 0.01 -> 151


def test_usage_outside_the_window_does_not_count() -> None:
    old = observe(None, DAY - timedelta(days=8), None, D("1000"))
    old = observe(old, DAY - timedelta(days=8), D("1000"), D("1"))
    assert advise(old) is None


def test_todays_usage_counts() -> None:
    u = feed([(DAY, "1000.00"), (DAY, "800.00")])
    got = advise(u)
    assert got is not None
    assert got.observed_daily_usage == D("200.00")


def test_at_most_one_notice_per_seven_days() -> None:
    u = heavy_week("500")
    for back in range(NOTICE_INTERVAL_DAYS):
        assert advise(u, last_notice=DAY - timedelta(days=back)) is None
    assert advise(u, last_notice=DAY + timedelta(days=1)) is None  # a notice dated after today
    assert advise(u, last_notice=DAY - timedelta(days=NOTICE_INTERVAL_DAYS)) is not None


def test_jpy_has_no_minor_unit() -> None:
    heavy = advise(heavy_week("1500"), amount=D("1000"), currency="JPY")
    assert heavy is not None
    assert exact(heavy.recommended_trigger_amount) == exact(D("1500"))
    low = advise(
        heavy_week("800"),
        amount=D("1000"),
        balance_at_trigger=D("-900"),
        threshold=D("300"),
        currency="JPY",
    )  # -900 + 1000 = 100, below 300; lifting -900 above 300 takes 1200 + 1 yen
    assert low is not None
    assert low.reason == AdviceReason.BALANCE_STILL_AT_OR_BELOW_THRESHOLD
    assert exact(low.recommended_trigger_amount) == exact(D("1201"))


def test_kwd_has_three_decimals() -> None:
    got = advise(
        heavy_week("10.001"),
        amount=D("10.000"),
        balance_at_trigger=D("1.000"),
        threshold=D("2.000"),
        currency="KWD",
    )
    assert got is not None
    assert got.reason == AdviceReason.USAGE_ABOVE_TRIGGER_AMOUNT
    assert got.observed_daily_usage == D("10.001")
    assert exact(got.recommended_trigger_amount) == exact(D("11.000"))
    lifted = advise(
        None, amount=D("5.000"), balance_at_trigger=D("-6.000"), threshold=D("-1.000"),
        currency="KWD",
    )  # fmt: skip
    assert lifted is not None
    assert exact(lifted.recommended_trigger_amount) == exact(D("6.000"))  # 5.001 -> 6


# --- the binary form -------------------------------------------------------------------------


def typical_week() -> Usage:
    u: Usage | None = None
    previous: Decimal | None = None
    for i in range(WINDOW_DAYS + 1):
        day = DAY + timedelta(days=i)
        for balance in ("1234.56", "1188.89", "2500.00", "2454.33"):
            u = observe(u, day, previous, D(balance))
            previous = D(balance)
    assert u is not None
    return u


def test_eight_typical_days_pack_under_200_bytes_and_back() -> None:
    u = typical_week()
    assert len(u.days) == 8
    data = pack(u)
    assert len(data) < 200
    assert unpack(data) == u


def test_pack_keeps_exponents_and_negative_zero() -> None:
    u = Usage(
        (DayUsage(DAY, D("0"), D("-0.00")), DayUsage(DAY + timedelta(1), D("1.5E+3"), D("7")))
    )
    back = unpack(pack(u))
    assert [(exact(d.usage), exact(d.low)) for d in back.days] == [
        (exact(d.usage), exact(d.low)) for d in u.days
    ]


@pytest.mark.parametrize(
    "bad",
    [
        Usage(()),
        Usage((DayUsage(DAY, D("-1"), D(0)),)),
        Usage((DayUsage(DAY, D("-0"), D(0)),)),
        Usage((DayUsage(DAY, D("NaN"), D(0)),)),
        Usage((DayUsage(DAY, D(1), D("Infinity")),)),
        Usage((DayUsage(DAY, D(1), D(0)), DayUsage(DAY, D(1), D(0)))),
        Usage((DayUsage(DAY, D(1), D(0)), DayUsage(DAY + timedelta(8), D(1), D(0)))),
    ],
)
def test_pack_refuses_what_observe_never_builds(bad: Usage) -> None:
    with pytest.raises(ValueError, match=r"."):
        pack(bad)


def test_unpack_refuses_corrupt_input() -> None:
    good = pack(typical_week())
    for bad in (
        b"",
        b"1" + good[1:],
        good[:-1] + b",",
        good + b"\x00",
        good + b";9,1,1",
        good.replace(b";", b";x", 1),
        good[:3] + b"\xff" + good[4:],
        b"2 1;0,NaN,1",
        b"2 " + b"9" * 4000,
    ):
        with pytest.raises(ValueError, match=r"."):
            unpack(bad)


def test_no_float_in_the_advisor() -> None:
    for module in (usage_module, usage_codec):
        tree = ast.parse(inspect.getsource(module))
        floats = [
            node
            for node in ast.walk(tree)
            if (isinstance(node, ast.Constant) and isinstance(node.value, float))
            or (isinstance(node, ast.Name) and node.id == "float")
        ]
        assert floats == [], module.__name__


# --- properties ------------------------------------------------------------------------------

CURRENCIES = st.sampled_from(["USD", "JPY", "KWD"])


def amounts(currency: str, low: int = -(10**7), high: int = 10**7) -> st.SearchStrategy[Decimal]:
    exponent = minor_unit_exponent(currency)
    return st.integers(low * 10**exponent, high * 10**exponent).map(
        lambda n: D(n).scaleb(-exponent)
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[tuple[date, Decimal]]]:
    """A currency and balance events, mostly in day order, some late, some far back."""
    currency = draw(CURRENCIES)
    offsets = draw(
        st.lists(
            st.one_of(st.integers(0, 2), st.integers(-9, 0), st.integers(3, 12)),
            min_size=1,
            max_size=60,
        )
    )
    day = DAY
    events = []
    for step in offsets:
        day = day + timedelta(days=step) if step > 0 else day
        at = day + timedelta(days=step) if step < 0 else day
        events.append((at, draw(amounts(currency))))
    return currency, events


def replay(events: list[tuple[date, Decimal]]) -> Usage:
    u: Usage | None = None
    previous: Decimal | None = None
    for day, balance in events:
        u = observe(u, day, previous, balance)
        previous = balance
    assert u is not None
    return u


def reference(events: list[tuple[date, Decimal]]) -> dict[date, tuple[Decimal, Decimal]]:
    """The contract's count, written apart from the code: every event inside the window of the
    newest day seen so far adds its decrease to its day; the days kept are the last 8."""
    per_day: dict[date, tuple[Decimal, Decimal]] = {}
    newest: date | None = None
    previous: Decimal | None = None
    for day, balance in events:
        newest = day if newest is None or day > newest else newest
        if (newest - day).days <= WINDOW_DAYS:
            decrease = max(previous - balance, D(0)) if previous is not None else D(0)
            used, low = per_day.get(day, (D(0), balance))
            per_day[day] = (used + decrease, min(low, balance))
        previous = balance
    assert newest is not None
    return {d: v for d, v in per_day.items() if (newest - d).days <= WINDOW_DAYS}


@given(histories())
@settings(max_examples=200, deadline=None)
def test_observe_matches_the_reference_count(
    history: tuple[str, list[tuple[date, Decimal]]],
) -> None:
    _, events = history
    u = replay(events)
    expected = reference(events)
    assert {d.day: (d.usage, d.low) for d in u.days} == expected
    assert [d.day for d in u.days] == sorted(expected)
    assert sum(d.usage for d in u.days) == sum(used for used, _ in expected.values())
    assert len(u.days) <= WINDOW_DAYS + 1
    for d in u.days:
        assert d.usage >= 0
        assert not d.usage.is_signed()
        assert isinstance(d.usage, Decimal)
        assert isinstance(d.low, Decimal)


@given(histories(), st.integers(-3, 20))
@settings(max_examples=100, deadline=None)
def test_window_is_at_most_eight_days_up_to_today(
    history: tuple[str, list[tuple[date, Decimal]]], ahead: int
) -> None:
    u = replay(history[1])
    today = u.days[-1].day + timedelta(days=ahead)
    listed = window(u, today)
    assert len(listed) <= WINDOW_DAYS + 1
    assert all(0 <= (today - d.day).days <= WINDOW_DAYS for d in listed)


def assert_exactly(a: Usage, b: Usage) -> None:
    assert [(d.day, exact(d.usage), exact(d.low)) for d in a.days] == [
        (d.day, exact(d.usage), exact(d.low)) for d in b.days
    ]


@given(histories())
@settings(max_examples=150, deadline=None)
def test_pack_round_trip_of_observed_usage(history: tuple[str, list[tuple[date, Decimal]]]) -> None:
    u = replay(history[1])
    assert_exactly(unpack(pack(u)), u)


ANY_DECIMAL = st.decimals(allow_nan=False, allow_infinity=False)


@st.composite
def any_usage(draw: st.DrawFn) -> Usage:
    """Any value `pack` accepts: any finite amounts, any exponents, -0 lows."""
    newest = draw(st.dates(date(1, 1, 10), date(9999, 12, 31)))
    backs = sorted(draw(st.sets(st.integers(1, WINDOW_DAYS))) | {0}, reverse=True)
    return Usage(
        tuple(
            DayUsage(
                newest - timedelta(days=back),
                draw(ANY_DECIMAL.map(lambda a: a.copy_abs())),
                draw(ANY_DECIMAL),
            )
            for back in backs
        )
    )


@given(any_usage())
@settings(max_examples=150, deadline=None)
def test_pack_round_trip_of_any_value(u: Usage) -> None:
    assert_exactly(unpack(pack(u)), u)


@st.composite
def advice_cases(draw: st.DrawFn) -> tuple[Usage, date, dict[str, object]]:
    """Usage, a day, and a Trigger Amount often at (or a few minor units around) the highest
    daily usage of the window, so that the notice is as often due as not."""
    currency, events = draw(histories())
    u = replay(events)
    today = u.days[-1].day - timedelta(days=draw(st.integers(0, 3)))
    highest = max((d.usage for d in window(u, today)), default=D(0))
    minor = D(1).scaleb(-minor_unit_exponent(currency))
    near = st.integers(-2, 2).map(lambda k: highest + k * minor)
    amount = draw(st.one_of(amounts(currency, 0, 10**6), near).filter(lambda a: a > 0))
    kw: dict[str, object] = {
        "amount": amount,
        "balance_at_trigger": draw(amounts(currency, -(10**6), 10**6)),
        "threshold": draw(amounts(currency, -(10**6), 10**6)),
        "currency": currency,
        "last_notice": draw(st.none() | st.integers(-20, 20).map(lambda n: today - timedelta(n))),
    }
    return u, today, kw


@given(advice_cases())
@settings(max_examples=200, deadline=None)
def test_advice_properties(case: tuple[Usage, date, dict[str, object]]) -> None:
    u, today, kw = case
    got = advice(u, today, **kw)  # type: ignore[arg-type]
    amount = kw["amount"]
    balance_at_trigger = kw["balance_at_trigger"]
    threshold = kw["threshold"]
    last_notice = kw["last_notice"]
    assert isinstance(amount, Decimal)
    assert isinstance(balance_at_trigger, Decimal)
    assert isinstance(threshold, Decimal)
    highest = max((d.usage for d in window(u, today)), default=D(0))
    recent = isinstance(last_notice, date) and (today - last_notice).days < NOTICE_INTERVAL_DAYS
    due = balance_at_trigger + amount <= threshold or highest > amount
    event("due" if due else "not due")
    assert (got is not None) == (due and not recent)
    if got is None:
        return
    recommended = got.recommended_trigger_amount
    assert isinstance(recommended, Decimal)
    assert got.observed_daily_usage == highest
    assert recommended > amount
    assert recommended == recommended.to_integral_value()
    assert recommended >= highest
    assert balance_at_trigger + recommended > threshold
