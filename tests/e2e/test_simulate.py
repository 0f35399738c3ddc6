"""`auto-topup simulate` against a real broker: a customer's history goes through the running
service first, then the command replays it from Kafka alone. As recorded, the simulation must
find exactly the top-ups the service published; with proposed settings, their amounts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from tests.cli_tools import CliRun, run_cli
from tests.e2e.conftest import Flow, customer_id, pinned_offset
from tests.service_process import ServiceProcess

# The history spans four business days (UTC) up to the service's clock: the live service must
# decide the oldest of them too, so its old-day guard looks back further than the default day.
HISTORY_DAYS = 3


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK); past days'
    events are at noon UTC, today's just before the clock, so each falls on its own day."""
    return pinned_offset()


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "AUTO_TOPUP_OLD_DAY_WINDOW_DAYS": str(HISTORY_DAYS + 2)}


def noon(flow: Flow, days_ago: int) -> datetime:
    """Noon UTC, `days_ago` days before the service's date."""
    return datetime.combine(flow.now().date() - timedelta(days=days_ago), time(12), UTC)


async def simulate(env: dict[str, str], customer: str, since: datetime, *args: str) -> CliRun:
    return await run_cli(env, "simulate", customer, "--from", since.isoformat(), "--json", *args)


def decided(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return sorted(
        (t["business_date"], t["method"], t["amount"], t["result"]) for t in report["top_ups"]
    )


def published(flow: Flow, customer: str) -> list[tuple[str, str, str, str]]:
    """What the service published for the customer, as the simulation reports top-ups."""
    found = [
        (e["business_date"], e["payment_method"], e["amount"], result)
        for name, result in (
            ("INVOICE_REQUESTED", "invoice_requested"),
            ("CREDIT_ISSUED", "credit_issued"),
            ("TOP_UP_FAILED", "failed"),
        )
        for e in flow.out(name, customer)
    ]
    return sorted(found)


async def test_as_recorded_it_finds_what_the_service_published(
    flow: Flow, service_env: dict[str, str]
) -> None:
    customer = customer_id()
    first = noon(flow, HISTORY_DAYS)
    await flow.settings(
        customer, trigger="100.00", threshold="20.00", at=first - timedelta(hours=1), version=1
    )
    await flow.flush(customer)
    history = [
        ("50.00", first),
        ("15.00", first + timedelta(minutes=1)),  # due: a top-up on the first day
        ("10.00", first + timedelta(minutes=2)),  # the same day: suppressed
        ("30.00", noon(flow, 2)),  # above: none
        ("19.00", noon(flow, 1)),  # due
        ("5.00", flow.now() - timedelta(minutes=1)),  # due, today
    ]
    for seq, (amount, at) in enumerate(history, start=1):
        await flow.balance(customer, amount, at=at, sequence=seq)
    await flow.wait_out("INVOICE_REQUESTED", customer, 3)
    await flow.flush(customer)
    live = published(flow, customer)
    assert [(d, amount) for d, _, amount, _ in live] == [
        (noon(flow, days).date().isoformat(), "100.00") for days in (HISTORY_DAYS, 1)
    ] + [((flow.now() - timedelta(minutes=1)).date().isoformat(), "100.00")]

    since = first - timedelta(hours=2)
    report = (await simulate(service_env, customer, since)).json()
    current = report["current"]
    assert decided(current) == live
    assert current["count"] == 3
    assert current["totals"] == {"USD": "300.00"}
    assert current["days_at_or_below_threshold"] == 3
    assert current["lowest_balance"] == "5.00"
    assert current["suppressed"] == {"daily_key_taken": 1}
    assert current["notices"] == []
    assert report["proposed"] == current  # nothing proposed

    report = (await simulate(service_env, customer, since, "--trigger-amount", "175.5")).json()
    assert report["proposal"] == {"trigger_amount": "175.5"}
    assert report["current"] == current
    proposed = report["proposed"]
    assert decided(proposed) == [(d, m, "175.50", r) for d, m, _, r in live]
    assert proposed["totals"] == {"USD": "526.50"}

    # Shifted: the first day's 175.50 (75.50 more than recorded) lifts the next balances above
    # the threshold until the recorded top-up it lacks makes today's 5.00 show as -19.50.
    report = (
        await simulate(
            service_env, customer, since, "--trigger-amount", "175.5", "--shift-balances"
        )
    ).json()
    assert report["shift_balances"] is True
    assert [t["business_date"] for t in report["proposed"]["top_ups"]] == [live[0][0], live[2][0]]
    assert report["proposed"]["lowest_balance"] == "-19.50"

    # A higher threshold makes the day at 30.00 due too.
    report = (await simulate(service_env, customer, since, "--limit-threshold", "30")).json()
    assert [t["business_date"] for t in report["proposed"]["top_ups"]] == sorted(
        [d for d, _, _, _ in live] + [noon(flow, 2).date().isoformat()]
    )
    assert report["proposed"]["days_at_or_below_threshold"] == 4


async def test_a_master_account_customer_is_funded_from_its_partners_history(
    flow: Flow, service_env: dict[str, str]
) -> None:
    partner, customer = customer_id("partner"), customer_id()
    first = noon(flow, 2)
    await flow.balance(partner, "150.00", at=first - timedelta(hours=2), sequence=1)
    await flow.flush(partner)
    await flow.settings(
        customer,
        method="master_account",
        partner_id=partner,
        trigger="100.00",
        threshold="20.00",
        at=first - timedelta(hours=1),
    )
    await flow.flush(customer)
    await flow.balance(customer, "10.00", at=first, sequence=1)
    await flow.balance(customer, "12.00", at=noon(flow, 1), sequence=2)
    await flow.reader.wait_for(
        lambda _: len(published(flow, customer)) == 2,
        what="two decisions",
    )
    live = published(flow, customer)
    # The partner's 150.00 covers the first 100.00; the second finds only 50.00 available.
    assert [r for _, _, _, r in live] == ["credit_issued", "failed"]

    since = first - timedelta(hours=3)
    report = (await simulate(service_env, customer, since, "--trigger-amount", "60")).json()
    assert decided(report["current"]) == live
    assert report["current"]["failed"] == {"partner_insufficient_funds": 1}
    # 60.00 twice fits in the partner's 150.00.
    assert [(t["amount"], t["result"]) for t in report["proposed"]["top_ups"]] == [
        ("60.00", "credit_issued")
    ] * 2
    assert report["proposed"]["failed"] == {}


async def test_an_unknown_customer_or_an_unreachable_kafka_is_one_line(
    service: ServiceProcess, service_env: dict[str, str]
) -> None:
    """(The running service has created the topics.)"""
    since = datetime(2026, 11, 20, tzinfo=UTC)
    unknown = await simulate(service_env, f"nobody-{uuid.uuid4().hex[:8]}", since)
    assert unknown.code == 1
    assert unknown.err.strip().startswith("error: no records of customer")
    assert len(unknown.err.strip().splitlines()) == 1
    unreachable = await simulate(
        {**service_env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "c-1", since, "--wait", "1"
    )
    assert unreachable.code == 1
    assert unreachable.err.strip().startswith("error: Kafka is unreachable")
    assert len(unreachable.err.strip().splitlines()) == 1
    bad = await simulate(service_env, "c-1", since, "--trigger-amount", "1e3")
    assert bad.code == 2
