"""`auto-topup replay` as an operator runs it: a subprocess against the real broker and database,
with the service itself not running."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from service.contract.codec import output_event_id
from tests import kafka_tools
from tests.cli_tools import CliRun, run_cli
from tests.conftest import Infra
from tests.e2e.conftest import pinned_offset, service_now
from tests.factories import balance_wire, dumps, settings_wire
from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS, TopicReader, ensure_topics, partitions_of
from tests.pg_tools import connect
from tests.service_process import Topics

OUTPUTS = ("INVOICE_REQUESTED", "CREDIT_ISSUED", "TOP_UP_FAILED", "AUTO_TOPUP_DEAD_LETTER")


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), and every
    event dated from it (`ticks`): far from the day boundary whatever the hour the tests run
    at. `replay` decides with the same clock as the service (it is given the service's
    environment, AUTO_TOPUP_CLOCK_OFFSET_SECONDS included)."""
    return pinned_offset()


def ticks(start: datetime) -> Callable[[], datetime]:
    """Event times from `start` on, a millisecond apart: each event newer than the one before."""
    count = itertools.count()
    return lambda: start + timedelta(milliseconds=next(count))


async def replay(env: dict[str, str], *args: str) -> CliRun:
    return await run_cli(env, "replay", *args)  # waits CLI_SECONDS at most


class Sender:
    """One producer; every record gets its own, increasing broker timestamp (its send time)."""

    def __init__(self, infra: Infra, topics: Topics) -> None:
        self._topics = topics
        self._producer = AIOKafkaProducer(
            bootstrap_servers=infra.kafka,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
        )
        self._last_ms = 0

    async def __aenter__(self) -> Sender:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, name: str, key: str, body: dict[str, Any] | bytes) -> None:
        value = body if isinstance(body, bytes) else dumps(body)
        at = max(int(time.time() * 1000), self._last_ms + 1)
        self._last_ms = at
        await (
            await self._producer.send(
                self._topics[name], value=value, key=key.encode(), timestamp_ms=at
            )
        )


async def moment() -> datetime:
    """A time strictly between the records sent before and after (broker timestamps in ms)."""
    await asyncio.sleep(0.01)
    at = datetime.now(UTC)
    await asyncio.sleep(0.01)
    return at


async def end_offsets(infra: Infra, topics: Topics) -> dict[TopicPartition, int]:
    """The output topics' end offsets, now."""
    return await kafka_tools.end_offsets(infra.kafka, [topics[n] for n in OUTPUTS])


async def table_counts(database_url: str) -> dict[str, int]:
    conn = await connect(database_url)
    try:
        return {
            t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
            for t in ("wallets", "daily_keys", "outbox", "decision_summary")
        }
    finally:
        await conn.close()


def read_report(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    return rows


def per_customer(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for row in rows:
        found[row["customer_id"]].append((row["outcome"], row["reason"]))
    return dict(found)


def cid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_dry_run_predicts_the_live_replay_which_is_idempotent(
    infra: Infra,
    topics: Topics,
    service_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    clock_offset: float,
) -> None:
    await ensure_topics(infra.kafka, topics.env().values(), 3)
    a, b, c, d, e, partner = (cid(p) for p in ("a", "b", "c", "d", "e", "partner"))
    start = service_now(clock_offset)
    at = ticks(start)
    since = await moment()
    async with Sender(infra, topics) as send:
        cheque: dict[str, Any] = {"trigger": "100.00", "threshold": "10.00", "version": 1}
        await send.send("SETTINGS_UPDATED", a, settings_wire(a, at=at(), **cheque))
        await send.send("SETTINGS_UPDATED", b, settings_wire(b, auto=False, at=at(), **cheque))
        await send.send("SETTINGS_UPDATED", c, settings_wire(c, at=at(), **cheque))
        await send.send("WALLET_BALANCE_CHANGED", partner, balance_wire(partner, "500.00", at=at()))
        await send.send(
            "SETTINGS_UPDATED",
            e,
            settings_wire(e, method="master_account", partner_id=partner, at=at(), **cheque),
        )
        for customer, amount, sequence in (
            (a, "50.00", 1),
            (a, "5.00", 2),
            (b, "5.00", 1),
            (c, "5.00", 1),
            (c, "50.00", 2),
            (c, "3.00", 3),
        ):
            body = balance_wire(customer, amount, at=at(), sequence=sequence)
            await send.send("WALLET_BALANCE_CHANGED", customer, body)
        await send.send("WALLET_BALANCE_CHANGED", d, b'{"event_id": "broken"')
        await send.send("WALLET_BALANCE_CHANGED", e, balance_wire(e, "2.00", at=at(), sequence=1))
    today = start.date()  # the business date of every event (UTC, the default timezone)
    ends_before = await end_offsets(infra, topics)

    # 1. The dry run: decisions reported, nothing written, nothing published.
    dry = tmp_path / "dry.json"
    done = (
        await replay(service_env, "--from", since.isoformat(), "--dry-run", "--report", str(dry))
    ).ok()
    assert "dry run: nothing was written" in done.out
    assert "would publish: 3 output events" in done.out
    rows = read_report(dry)
    assert per_customer(rows) == {
        a: [("triggered", None)],
        b: [("blocked", "auto_trigger_off")],
        c: [("triggered", None), ("suppressed", "daily_key_taken")],
        d: [("dead_lettered", "invalid_json")],
        e: [("triggered", None)],
    }
    outputs = {(r["output_topic"], r["output_event_id"]) for r in rows if r["output_event_id"]}
    assert outputs == {
        (topics["INVOICE_REQUESTED"], output_event_id(a, today, "invoice-requested")),
        (topics["INVOICE_REQUESTED"], output_event_id(c, today, "invoice-requested")),
        (topics["CREDIT_ISSUED"], output_event_id(e, today, "credit-issued")),
    }
    triggered = [r for r in rows if r["outcome"] == "triggered"]
    assert {r["business_date"] for r in triggered} == {today.isoformat()}
    assert {r["method"] for r in triggered} == {
        "cheque_tt",
        "master_account",
    }
    dead = {
        (r["topic"], r["partition"], r["offset"]) for r in rows if r["outcome"] == "dead_lettered"
    }
    assert await end_offsets(infra, topics) == ends_before
    assert await table_counts(database_url) == dict.fromkeys(
        ("wallets", "daily_keys", "outbox", "decision_summary"), 0
    )

    # 2. The live replay publishes exactly what the dry run predicted.
    live = tmp_path / "live.json"
    done = (await replay(service_env, "--from", since.isoformat(), "--report", str(live))).ok()
    assert "decided: 3 output events" in done.out
    assert "published: 4 records" in done.out
    assert [(r["customer_id"], r["outcome"], r["output_event_id"]) for r in read_report(live)] == [
        (r["customer_id"], r["outcome"], r["output_event_id"]) for r in rows
    ]
    async with TopicReader(infra.kafka, *(topics[n] for n in OUTPUTS)) as reader:
        published = await reader.drain()
    dlq = topics["AUTO_TOPUP_DEAD_LETTER"]
    assert {(p.topic, p.json()["event_id"]) for p in published if p.topic != dlq} == outputs
    assert {
        (
            p.headers["dlq_original_topic"].decode(),
            int(p.headers["dlq_original_partition"]),
            int(p.headers["dlq_original_offset"]),
        )
        for p in published
        if p.topic == dlq
    } == dead
    ends_after_live = await end_offsets(infra, topics)

    # 3. Again: everything is stale (the malformed record is dead-lettered under the same
    # outbox key, which is already taken), and nothing new is published.
    again = tmp_path / "again.json"
    done = (await replay(service_env, "--from", since.isoformat(), "--report", str(again))).ok()
    assert "decided: 0 output events, 1 dead letter" in done.out
    assert "published: 0 records" in done.out
    second = read_report(again)
    assert {r["outcome"] for r in second if r["customer_id"] != d} == {"stale"}
    assert not [r for r in second if r["output_event_id"]]
    assert await end_offsets(infra, topics) == ends_after_live


async def test_only_the_window_is_replayed_in_batches_that_see_each_other(
    infra: Infra,
    topics: Topics,
    service_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    clock_offset: float,
) -> None:
    await ensure_topics(infra.kafka, topics.env().values(), 3)
    customer, before, inside, after = (cid(p) for p in ("p", "x-before", "x-inside", "x-after"))
    at = ticks(service_now(clock_offset))
    start = await moment()
    async with Sender(infra, topics) as send:
        await send.send("SETTINGS_UPDATED", customer, settings_wire(customer, at=at(), version=1))
        await send.send("WALLET_BALANCE_CHANGED", before, b"not json")
        since = await moment()
        for sequence, amount in enumerate(("5.00", "50.00", "3.00"), start=1):
            await send.send(
                "WALLET_BALANCE_CHANGED",
                customer,
                balance_wire(customer, amount, at=at(), sequence=sequence),
            )
        await send.send("WALLET_BALANCE_CHANGED", inside, b"not json")
        until = await moment()
        await send.send(
            "WALLET_BALANCE_CHANGED",
            customer,
            balance_wire(customer, "1.00", at=at(), sequence=4),
        )
        await send.send("WALLET_BALANCE_CHANGED", after, b"not json")

    # The settings go live in a first window; what follows is a dry run, one record a batch:
    # the settings come from PostgreSQL, the daily key from the batch before.
    (await replay(service_env, "--from", start.isoformat(), "--to", since.isoformat())).ok()
    env = {**service_env, "AUTO_TOPUP_BATCH_MAX_RECORDS": "1"}
    report = tmp_path / "window.csv"
    args = ("--from", since.isoformat(), "--to", until.isoformat(), "--report", str(report))
    done = (await replay(env, *args, "--dry-run")).ok()
    assert "records: 4" in done.out
    lines = report.read_text().splitlines()
    assert lines[0].startswith("customer_id,topic,partition,offset,event_id,outcome,reason")
    assert [tuple(line.split(",")[i] for i in (0, 5, 6)) for line in lines[1:]] == [
        (customer, "triggered", ""),
        (customer, "suppressed", "daily_key_taken"),
        (inside, "dead_lettered", "invalid_json"),
    ]
    assert (await table_counts(database_url))["daily_keys"] == 0

    # Live, with a named group: its progress is committed up to the window's end.
    group = f"replay-test-{uuid.uuid4().hex[:8]}"
    (await replay(env, *args, "--group", group)).ok()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka, group_id=group, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await consumer.start()
    try:
        balances = await partitions_of(infra.kafka, [topics["WALLET_BALANCE_CHANGED"]])
        consumer.assign(balances)
        committed = {tp: await consumer.committed(tp) for tp in balances}
        ends = await consumer.end_offsets(balances)
    finally:
        await consumer.stop()
    # The two records after --to are not replayed: the group stops short of the ends by them.
    assert sum(ends.values()) - sum(n or 0 for n in committed.values()) == 2
    counts = await table_counts(database_url)
    assert counts["daily_keys"] == 1


async def test_clear_errors(service_env: dict[str, str]) -> None:
    naive = await replay(service_env, "--from", "2026-11-25T10:00:00")
    assert naive.code == 2
    assert "no UTC offset" in naive.err
    backwards = await replay(
        service_env, "--from", "2026-11-25T10:00:00Z", "--to", "2026-11-25T09:00:00Z"
    )
    assert backwards.code == 2
    unreachable = await replay(
        {**service_env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        "--from",
        "2026-11-25T10:00:00Z",
        "--wait",
        "1",
    )
    assert unreachable.code == 1
    assert unreachable.err.strip().splitlines() == [unreachable.err.strip()]
    assert unreachable.err.startswith("error: Kafka is unreachable")
