"""Retention through the real broker and database: the running service decides with its clock
pinned (`clock_offset`: 10:00 UTC today or yesterday); `auto-topup prune` runs days later on a
clock of its own choosing (AUTO_TOPUP_CLOCK_OFFSET_SECONDS); then `auto-topup replay` re-reads the
input topics from offset 0 at that later instant, and publishes nothing new.

The later instant is five days on: inside Kafka's default retention (7 days), so a real replay
could still read these records then, and past the horizons chosen for the run (daily keys 4
days, the least a one-day old-day window allows; output events 1 day). Dead letters keep their
21 days. A counter reset makes the replayed balances apply again instead of being stale, so
that what stops them is the old-day guard, not the wallet's memory of them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from service.contract.codec import output_event_id
from tests import kafka_tools
from tests.cli_tools import run_cli
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, pinned_offset, service_now
from tests.kafka_tools import WAIT_SECONDS
from tests.pg_tools import connect
from tests.service_process import ServiceProcess, Topics

OUTPUTS = ("INVOICE_REQUESTED", "CREDIT_ISSUED", "TOP_UP_FAILED", "AUTO_TOPUP_DEAD_LETTER")
FROM_OFFSET_ZERO = "1970-01-01T00:00:00Z"  # every record of these (per-test) topics
LATER = timedelta(days=5)  # when the operator prunes, then replays
HTTP_SECONDS = 60.0  # one request to the service's /metrics (generous, named)
POLL_SECONDS = 0.2  # between two scrapes while waiting for a condition


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK)."""
    return pinned_offset()


async def end_offsets(infra: Infra, topics: Topics) -> dict[TopicPartition, int]:
    """The output topics' end offsets, now."""
    return await kafka_tools.end_offsets(infra.kafka, [topics[n] for n in OUTPUTS])


async def rows(database_url: str, sql: str) -> list[Any]:
    conn = await connect(database_url)
    try:
        return [tuple(r.values()) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def metrics_of(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_SECONDS)) as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as r,
    ):
        assert r.status == 200
        text = await r.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_replay_across_the_pruning_horizon_publishes_nothing_new(
    infra: Infra,
    topics: Topics,
    service: ServiceProcess,
    service_env: dict[str, str],
    flow: Flow,
    database_url: str,
    clock_offset: float,
    tmp_path: Path,
) -> None:
    a, b, d = customer_id("a"), customer_id("b"), customer_id("d")
    today = service_now(clock_offset).date()  # every business date below (UTC)

    # 1. The service decides: two invoices and a dead letter, on its pinned clock.
    for customer in (a, b):
        await flow.settings(customer, version=1)
        await flow.balance(customer, "50.00", sequence=1)
        await flow.balance(customer, "5.00", sequence=2)
    await flow.send("WALLET_BALANCE_CHANGED", b'{"not": "closed"', d)
    for customer in (a, b):
        (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
        assert invoice["event_id"] == output_event_id(customer, today, "invoice-requested")
    await flow.reader.wait_for(lambda _: len(flow.dead(d)) == 1, what=f"dead letter of {d}")

    # Its pruner ran at start-up (nothing was old then), and /metrics shows it.
    port = service.http_port
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        samples = await metrics_of(port)
        if samples.get(("auto_topup_retention_last_run_timestamp_seconds", frozenset()), 0) > 0:
            break
        assert time.monotonic() < deadline, "the service's pruner never finished a run"
        await _pause()
    for table in ("daily_keys", "outbox_events", "outbox_dead_letters"):
        key = ("auto_topup_retention_oldest_prunable_age_seconds", frozenset({("table", table)}))
        assert samples[key] == 0

    # SIGTERM publishes what is left in the outbox: every row is published now.
    assert service.stop() == 0, "\n".join(service.lines[-30:])
    assert await rows(database_url, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == [
        (0,)
    ]
    keys = await rows(database_url, "SELECT customer_id, business_date, phase FROM daily_keys")
    assert sorted(keys) == sorted([(a, today, "done"), (b, today, "done")])

    # 2. Five days on, the operator prunes (a dry run first).
    later = {
        **service_env,
        "AUTO_TOPUP_CLOCK_OFFSET_SECONDS": repr(clock_offset + LATER.total_seconds()),
        "AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS": "4",
        "AUTO_TOPUP_RETENTION_OUTBOX_DAYS": "1",
    }
    expected = {
        "daily_keys": 2,
        "outbox_events": 2,
        "outbox_dead_letters": 0,  # 14 days: the input topics may still hold its record
        "decision_summary": 0,
        "charge_audit": 0,
        "counter_audit": 0,
        "customer_history": 0,  # five days: kept 90
        "open_invoices": 0,
    }
    dry = json.loads((await run_cli(later, "prune", "--dry-run", "--json")).ok().out)
    assert dry["dry_run"] is True
    assert {t: v["rows"] for t, v in dry["tables"].items()} == expected
    assert dry["tables"]["daily_keys"]["before"] == (today + LATER - timedelta(days=4)).isoformat()
    assert len(await rows(database_url, "SELECT 1 FROM daily_keys")) == 2  # nothing deleted
    done = json.loads((await run_cli(later, "prune", "--json")).ok().out)
    assert {t: v["rows"] for t, v in done["tables"].items()} == expected
    assert await rows(database_url, "SELECT * FROM daily_keys") == []
    outbox = await rows(database_url, "SELECT dedupe_key FROM outbox")
    assert len(outbox) == 1
    assert outbox[0][0].startswith(f"dlq/{topics['WALLET_BALANCE_CHANGED']}/")
    table = (await run_cli(later, "prune")).ok().out
    assert "pruned 0 rows" in table
    assert "kept for ever" in table

    # 3. A counter reset makes a's old balances apply again on a replay (not stale).
    (
        await run_cli(
            later, "admin", "reset-sequence", a, "--to", "0", "--by", "e2e", "--why", "retention"
        )
    ).ok()

    # 4. The replay from offset 0, across the horizon: nothing new.
    ends = await end_offsets(infra, topics)
    report = tmp_path / "replay.json"
    replayed = (
        (
            await run_cli(
                later,
                "replay",
                "--from",
                FROM_OFFSET_ZERO,
                "--group",
                f"retention-{uuid.uuid4().hex[:8]}",
                "--report",
                str(report),
            )
        )
        .ok()
        .out
    )
    assert "decided: 0 output events, 1 dead letter" in replayed  # d's, whose row is kept
    assert "published: 0 records" in replayed
    assert await end_offsets(infra, topics) == ends
    decided = json.loads(report.read_text())
    assert not [r for r in decided if r["output_event_id"]]
    # a's due balance was applied again and refused by the old-day guard, b's was stale.
    assert ("blocked", "old_business_date") in {
        (r["outcome"], r["reason"]) for r in decided if r["customer_id"] == a
    }
    assert {r["outcome"] for r in decided if r["customer_id"] == b} == {"stale"}
    assert await rows(database_url, "SELECT * FROM daily_keys") == []

    # 5. The counter-proof: had the dead letter's row been pruned while its input record is
    # still in the topic, the replay would dead-letter that record a second time. (Why dead
    # letters are kept longer than the input topics keep records.)
    too_short = {**later, "AUTO_TOPUP_RETENTION_DEAD_LETTERS_DAYS": "1"}
    gone = json.loads((await run_cli(too_short, "prune", "--json")).ok().out)
    assert gone["tables"]["outbox_dead_letters"]["rows"] == 1
    again = (
        (
            await run_cli(
                too_short,
                "replay",
                "--from",
                FROM_OFFSET_ZERO,
                "--group",
                f"retention-{uuid.uuid4().hex[:8]}",
            )
        )
        .ok()
        .out
    )
    assert "published: 1 record " in again
    after = await end_offsets(infra, topics)
    dead = {tp: n for tp, n in after.items() if tp.topic == topics["AUTO_TOPUP_DEAD_LETTER"]}
    assert (
        sum(dead.values())
        == sum(n for tp, n in ends.items() if tp.topic == topics["AUTO_TOPUP_DEAD_LETTER"]) + 1
    )
    assert {tp: n for tp, n in after.items() if tp not in dead} == {
        tp: n for tp, n in ends.items() if tp not in dead
    }


async def _pause() -> None:
    await asyncio.sleep(POLL_SECONDS)  # between two scrapes, with a deadline
