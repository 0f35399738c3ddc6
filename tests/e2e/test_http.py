"""/healthz, /readyz and /metrics of the running service, scraped as Prometheus would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Flow, customer_id
from tests.kafka_tools import WAIT_SECONDS
from tests.service_process import ServiceProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# One request to the service's HTTP port. Answered in milliseconds on an idle machine, but
# /readyz pings PostgreSQL and the broker (up to 2 s each) from the same event loop as the
# batches, and a slow, loaded machine is slow at everything: generous, named (not aiohttp's).
HTTP_SECONDS = 60.0


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_SECONDS)) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as r,
    ):
        return r.status, await r.text()


async def scrape(port: int) -> Samples:
    status, text = await get(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_SECONDS
) -> None:
    """Until the service shows it (it may take as long as publishing does: WAIT_SECONDS)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)  # polling an endpoint, with a deadline


async def test_health_and_readiness(service: ServiceProcess) -> None:
    port = service.http_port
    assert await get(port, "/healthz") == (200, '{"status": "ok"}')

    async def ready() -> bool:
        return (await get(port, "/readyz"))[0] == 200

    await until(ready, "/readyz 200 (PostgreSQL and Kafka reachable, partitions assigned)")


async def test_not_ready_while_postgres_is_unreachable(service_env: dict[str, str]) -> None:
    env = {**service_env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/auto_topup"}
    proc = ServiceProcess(env, "no-db")
    proc.start(until="waiting for PostgreSQL")
    try:
        port = proc.http_port
        assert (await get(port, "/healthz"))[0] == 200  # alive: a restart would not help
        status, body = await get(port, "/readyz")
        assert status == 503
        assert '"postgres": "not connected yet"' in body
        assert '"partitions"' in body
    finally:
        assert proc.stop() == 0


async def test_metrics_move_as_events_flow(flow: Flow, service: ServiceProcess) -> None:
    port = service.http_port
    balance_topic = flow.topics["WALLET_BALANCE_CHANGED"]
    settings_topic = flow.topics["SETTINGS_UPDATED"]
    before = await scrape(port)

    low, off = customer_id("low"), customer_id("off")
    await flow.settings(low, trigger="100.00", threshold="10.00")
    await flow.settings(off, trigger="100.00", threshold="10.00", auto_trigger=False)
    # The two input topics are not ordered with each other: settings first, then balances.
    await flow.flush(low)
    await flow.flush(off)
    await flow.balance(low, "500.00", sequence=1)
    await flow.balance(low, "5.00", sequence=2)
    await flow.balance(off, "5.00", sequence=1)
    await flow.send("WALLET_BALANCE_CHANGED", b"{not json", low)
    await flow.wait_out("INVOICE_REQUESTED", low)
    await flow.flush(low)
    await flow.flush(off)

    after = await scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    applied = moved("auto_topup_events_consumed_total", topic=balance_topic, outcome="applied")
    assert applied == 3
    assert moved("auto_topup_events_consumed_total", topic=settings_topic, outcome="applied") == 2
    # the bad message and eight flush markers (four flushes, one marker on each topic)
    assert moved("auto_topup_dead_letters_total", reason="invalid_json") == 9
    assert (
        moved("auto_topup_events_consumed_total", topic=balance_topic, outcome="dead_lettered") == 5
    )
    assert (
        moved(
            "auto_topup_decisions_total",
            method="cheque_tt",
            outcome="triggered",
            reason="",
        )
        == 1
    )
    assert (
        moved(
            "auto_topup_decisions_total",
            method="cheque_tt",
            outcome="blocked",
            reason="auto_trigger_off",
        )
        == 1
    )
    assert moved("auto_topup_batch_seconds_count") >= 1
    assert moved("auto_topup_event_age_seconds_count") >= 1
    assert ("auto_topup_outbox_backlog", frozenset()) in after
    lag = [v for (name, _), v in after.items() if name == "auto_topup_consumer_lag"]
    assert lag, "a lag gauge per assigned partition"
    assert all(v >= 0 for v in lag)
