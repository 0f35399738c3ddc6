"""`auto-topup explain` against the running service: what an operator sees after real events.

The service's clock, and `explain`'s (both read AUTO_TOPUP_CLOCK_OFFSET_SECONDS), are pinned
(`clock_offset`); every event is dated from them (`flow.now()`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.cli_tools import CliRun, run_cli
from tests.e2e.conftest import Flow, customer_id, pinned_offset
from tests.kafka_tools import WAIT_SECONDS
from tests.service_process import Topics

# A customer's own timezone, and the time of day (UTC) the test that uses it pins the service's
# clock at: noon there (no daylight saving time), twelve hours from either of its midnights, so
# that its business day does not change while the test runs.
ZONE = "Asia/Kolkata"
NOON_IN_ZONE = clock_time(6, 30)


@pytest.fixture
def clock_offset(request: pytest.FixtureRequest) -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), or at the
    time of day (UTC) a test asks for (indirect parametrization): never at the host's hour."""
    at: clock_time | None = getattr(request, "param", None)
    return pinned_offset(at)


async def explain(env: dict[str, str], customer: str, *args: str) -> CliRun:
    """Runs `auto-topup explain` as an operator would, against this test's database."""
    return await run_cli(env, "explain", customer, *args, columns=200)


async def explain_until(
    env: dict[str, str],
    customer: str,
    condition: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = WAIT_SECONDS,
) -> dict[str, Any]:
    """`explain --json` again and again (each run takes a moment) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while True:
        run = await explain(env, customer, "--json")
        if run.code == 0:
            report: dict[str, Any] = json.loads(run.out)
            if condition(report):
                return report
        if time.monotonic() > deadline:
            raise AssertionError(f"explain never showed {what} within {timeout}s: {run}")


def _decision(report: dict[str, Any], outcome: str, reason: str | None) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        d for d in report["decisions"] if d["outcome"] == outcome and d["reason"] == reason
    ]
    assert len(found) == 1, report["decisions"]
    return found[0]


def _has(outcome: str, reason: str | None) -> Callable[[dict[str, Any]], bool]:
    return lambda r: any(d["outcome"] == outcome and d["reason"] == reason for d in r["decisions"])


async def test_auto_trigger_off_and_an_unknown_customer(
    flow: Flow, service_env: dict[str, str], topics: Topics
) -> None:
    customer = customer_id("explain-a")
    now = flow.now()
    settings = await flow.settings(
        customer, auto=False, threshold="10.00", at=now - timedelta(seconds=10), version=3
    )
    await flow.flush(customer)  # the topics are not ordered with each other
    low = await flow.balance(customer, "-5.00", at=now - timedelta(seconds=5), sequence=1)
    await flow.flush(customer)

    report = await explain_until(
        service_env, customer, _has("blocked", "auto_trigger_off"), "the blocked decision"
    )
    assert report["customer_id"] == customer
    assert report["next_top_up"]["code"] == "auto_trigger_off"
    assert report["next_top_up"]["not_before"] is None
    blocked = _decision(report, "blocked", "auto_trigger_off")
    assert blocked["times"] >= 1
    assert blocked["last_event_id"] == low["event_id"]
    assert blocked["method"] == "cheque_tt"
    assert blocked["topic"] == topics["WALLET_BALANCE_CHANGED"]
    assert blocked["source"] == (f"{blocked['topic']}[{blocked['partition']}]@{blocked['offset']}")

    s = report["settings"]
    assert s["auto_trigger"] is False
    assert s["limit_threshold"] == "10.00"
    assert s["origin"] == "finance_app"
    assert s["event_id"] == settings["event_id"]
    assert s["version"] == 3
    assert s["timezone"] is None
    assert s["effective_timezone"] == "UTC"
    assert s["card"] is None
    assert s["stripe_paused"] is False
    b = report["balance"]
    assert b["amount"] == "-5.00"
    assert b["currency"] == "USD"
    assert b["event_id"] == low["event_id"]
    assert b["sequence"] == 1
    assert b["at_or_below_threshold"] is True
    assert datetime.fromisoformat(b["occurred_at"]) == datetime.fromisoformat(low["occurred_at"])
    assert report["today"]["key"] is None
    assert report["today"]["timezone_is_default"] is True

    human = await explain(service_env, customer)
    assert human.code == 0, human.err
    for fact in (
        customer,
        "auto_trigger_off",
        "Never, until the Finance app enables auto-trigger.",
        "blocked",
        "-5.00 USD",
        low["event_id"],
        settings["event_id"],
        "finance_app (the Finance app)",
        "UTC (default)",
        "free (no top-up attempted today)",
    ):
        assert fact in human.out, f"{fact!r} not in:\n{human.out}"

    nobody = customer_id("nobody")
    for args in ((), ("--json",)):
        unknown = await explain(service_env, nobody, *args)
        assert unknown.code == 1, unknown
        assert f"unknown customer '{nobody}'" in unknown.err
        assert unknown.out == ""


@pytest.mark.parametrize("clock_offset", [NOON_IN_ZONE], indirect=True, ids=["noon-in-zone"])
async def test_daily_key_taken_shows_todays_key_and_the_next_business_day(
    flow: Flow, service_env: dict[str, str], topics: Topics
) -> None:
    customer = customer_id("explain-b")
    now = flow.now()
    tz_name = ZONE
    tz = ZoneInfo(tz_name)
    # The precondition the pinned clock is for: hours from the zone's midnight either way.
    local = now.astimezone(tz)
    assert timedelta(hours=1) < local - local.replace(hour=0, minute=0) < timedelta(hours=23)
    settings = await flow.settings(
        customer,
        threshold="10.00",
        trigger="75.00",
        timezone=tz_name,
        at=now - timedelta(seconds=20),
        version=1,
    )
    await flow.flush(customer)
    first = await flow.balance(customer, "9.00", at=now - timedelta(seconds=10), sequence=1)
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    second = await flow.balance(customer, "4.00", at=now - timedelta(seconds=5), sequence=2)
    await flow.flush(customer)

    report = await explain_until(
        service_env, customer, _has("suppressed", "daily_key_taken"), "the suppressed decision"
    )
    today = now.astimezone(tz).date()
    assert invoice["business_date"] == today.isoformat()

    t = report["today"]
    assert t["business_date"] == today.isoformat()
    assert t["timezone"] == tz_name
    assert t["timezone_is_default"] is False
    assert t["daily_key"] == f"{customer}/{today.isoformat()}"
    key = t["key"]
    assert key["phase"] == "done"
    assert key["result"] == "invoice_requested"
    assert key["amount"] == "75.00"
    assert key["trigger_event_id"] == first["event_id"]
    assert key["balance_at_trigger"] == "9.00"
    assert [k["business_date"] for k in report["recent_daily_keys"]] == [today.isoformat()]

    triggered = _decision(report, "triggered", None)
    suppressed = _decision(report, "suppressed", "daily_key_taken")
    assert triggered["last_event_id"] == first["event_id"]
    assert triggered["business_date"] == today.isoformat()
    assert triggered["method"] == "cheque_tt"
    assert suppressed["last_event_id"] == second["event_id"]
    assert suppressed["times"] >= 1
    assert suppressed["topic"] == topics["WALLET_BALANCE_CHANGED"]
    # Newest first: the suppressed one was decided after the invoice had come out.
    outcomes = [d["outcome"] for d in report["decisions"]]
    assert outcomes.index("suppressed") < outcomes.index("triggered")

    nxt = report["next_top_up"]
    tomorrow = today + timedelta(days=1)
    start = datetime.combine(tomorrow, clock_time(0), tzinfo=tz)
    assert nxt["code"] == "daily_key_taken"
    assert nxt["next_business_date"] == tomorrow.isoformat()
    assert datetime.fromisoformat(nxt["not_before"]) == start
    assert report["balance"]["amount"] == "4.00"
    assert report["balance"]["at_or_below_threshold"] is True

    s = report["settings"]
    assert s["origin"] == "finance_app"
    assert s["origin_label"] == "the Finance app"
    assert s["event_id"] == settings["event_id"]
    assert s["timezone"] == tz_name

    human = await explain(service_env, customer)
    assert human.code == 0, human.err
    for fact in (
        "daily_key_taken",
        f"{customer}/{today.isoformat()}",
        "done / invoice_requested",
        "triggered",
        "suppressed",
        "75.00 USD",
        first["event_id"],
        second["event_id"],
        settings["event_id"],
        "finance_app (the Finance app)",
        tomorrow.isoformat(),
        start.astimezone(UTC).isoformat(),
    ):
        assert fact in human.out, f"{fact!r} not in:\n{human.out}"
