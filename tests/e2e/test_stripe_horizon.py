"""Stripe's 24-hour idempotency window and its temporary declines, through the running service,
the real broker and database, and a scripted Stripe over real HTTP (localstripe has no Search
API and cannot decline "try again later").

The service's clock is pinned at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), never
ahead of the host's, and every event is dated from it. The horizon test runs the service twice:
first at that clock, while Stripe answers every create with a 500; then with its clock a day and
ten minutes further on (AUTO_TOPUP_CLOCK_OFFSET_SECONDS), as if the outage had lasted that long.
The charge must be looked up by its metadata.daily_key and never created again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.e2e.conftest import Flow, customer_id, online_top_up, pinned_offset
from tests.pg_tools import connect
from tests.service_process import ServiceProcess
from tests.stripe_http_fake import Recorded, Reply, ScriptedStripe, Step, error, found, intent

# How long the charger may take to act on what it leased, on a slow machine.
CHARGER_SECONDS = 60.0
CARD = ("cus_horizon", "pm_horizon")
# How far the second run's clock is ahead of the first's: past Stripe's 24-hour key horizon and
# the search's settling time (5 minutes).
OUTAGE = timedelta(days=1, minutes=10)


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK): behind the
    host's (PostgreSQL finds the first charge due at once), whatever the hour the tests run
    at; every event is dated from it (`flow.now()`)."""
    return pinned_offset()


def _is_create(request: Recorded) -> bool:
    return request.method == "POST" and request.path.startswith("/v1/payment_intents")


def _is_search(request: Recorded) -> bool:
    return request.method == "GET" and request.path.startswith("/v1/payment_intents/search")


def _stripe_down(request: Recorded) -> Step:
    """Every create fails with a 500 (as a saved 500 is replayed); search finds nothing."""
    if _is_search(request):
        return found()
    return error(500, type="api_error", message="An unknown error occurred")


@pytest.fixture
def stripe_http() -> Iterator[ScriptedStripe]:
    server = ScriptedStripe()
    server.otherwise = _stripe_down
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service_env(service_env: dict[str, str], stripe_http: ScriptedStripe) -> dict[str, str]:
    # Retries come within a second, so that the first run sees several 5xx quickly.
    return {
        **service_env,
        "STRIPE_API_BASE": stripe_http.base,
        "AUTO_TOPUP_STRIPE_RETRY_MAX_SECONDS": "1",
    }


async def _until(what: str, check: Any, seconds: float = CHARGER_SECONDS) -> Any:
    """Polls `check` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.1)


async def _daily_key(database_url: str, customer: str) -> asyncpg.Record | None:
    conn = await connect(database_url)
    try:
        return await conn.fetchrow(
            "SELECT phase, result, reason, attempts FROM daily_keys WHERE customer_id = $1",
            customer,
        )
    finally:
        await conn.close()


async def _paused(database_url: str, customer: str) -> bool:
    conn = await connect(database_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT stripe_paused FROM wallets WHERE customer_id = $1", customer
            )
        )
    finally:
        await conn.close()


async def test_a_charge_past_the_horizon_is_looked_up_and_never_created_again(
    flow: Flow,
    service: ServiceProcess,
    service_env: dict[str, str],
    stripe_http: ScriptedStripe,
    database_url: str,
    clock_offset: float,
) -> None:
    customer = customer_id()
    now = flow.now()
    await flow.settings(customer, **online_top_up(CARD), at=now - timedelta(seconds=10))
    await flow.balance(customer, "1.00", at=now - timedelta(seconds=5))
    # Stripe answers 500 again and again: the charge stays unresolved.
    await _until("two creates", lambda: _creates(stripe_http, 2))
    assert service.stop() == 0
    row = await _daily_key(database_url, customer)
    assert row is not None
    assert row["phase"] in ("claimed", "charging")
    creates_before = len([r for r in stripe_http.requests if _is_create(r)])

    # A day and ten minutes later on the service's clock (past the horizon and the search's
    # settling time).
    later_offset = clock_offset + OUTAGE.total_seconds()
    later = ServiceProcess(
        {**service_env, "AUTO_TOPUP_CLOCK_OFFSET_SECONDS": repr(later_offset)}, "later"
    )
    later.start()
    try:
        await _until(
            "the charge in needs_review",
            lambda: _phase_is(database_url, customer, "needs_review"),
        )
    finally:
        assert later.stop() == 0
    after = stripe_http.requests[len(stripe_http.requests) - 1 :]
    assert after, "nothing asked of Stripe after the restart"
    creates_after = len([r for r in stripe_http.requests if _is_create(r)]) - creates_before
    assert creates_after == 0, "a create was sent past the horizon"
    searches = [r for r in stripe_http.requests if _is_search(r)]
    assert searches, "the charge was not looked up by its daily key"
    assert "daily_key" in searches[-1].path
    assert flow.out("CREDIT_ISSUED", customer) == []
    assert flow.out("TOP_UP_FAILED", customer) == []


async def _creates(stripe_http: ScriptedStripe, n: int) -> bool:
    return len([r for r in stripe_http.requests if _is_create(r)]) >= n


async def _phase_is(database_url: str, customer: str, phase: str) -> bool:
    row = await _daily_key(database_url, customer)
    return row is not None and row["phase"] == phase


def _decline(code: str) -> Reply:
    return error(
        402,
        type="card_error",
        code="card_declined",
        decline_code=code,
        message="Your card was declined.",
        payment_intent=intent(f"pi_{code}", "requires_payment_method"),
    )


@pytest.mark.parametrize(
    ("decline_code", "pauses"), [("try_again_later", False), ("do_not_honor", True)]
)
async def test_a_temporary_decline_fails_the_top_up_without_pausing_the_card(
    flow: Flow,
    stripe_http: ScriptedStripe,
    database_url: str,
    decline_code: str,
    pauses: bool,
) -> None:
    stripe_http.script(_decline(decline_code))
    customer = customer_id()
    now = flow.now()
    await flow.settings(customer, **online_top_up(CARD), at=now - timedelta(seconds=10))
    await flow.balance(customer, "1.00", at=now - timedelta(seconds=5))
    (failed,) = await flow.wait_out("TOP_UP_FAILED", customer)
    assert failed["reason"] == decline_code
    assert await _paused(database_url, customer) is pauses
