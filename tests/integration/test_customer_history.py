"""The customers' history (migration 0013) on PostgreSQL: written by the batch in its own
transaction, read by the support page (PgSupportReads) as the in-memory reads read it, pruned
by the retention job."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import asyncpg

from service.adapters.memory import MemoryDatabase
from service.adapters.memory_support import MemorySupportReads
from service.adapters.postgres.retention import retention_store
from service.adapters.postgres.store import PgUnitOfWork
from service.adapters.postgres.support_reads import PgSupportReads
from service.config import Topics
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord, UnitOfWorkFactory
from service.service_layer.retention import Retention, prune
from service.service_layer.support import chart_since
from tests.factories import NOW, balance_wire, dumps, settings_wire

TOPICS = Topics()
POLICY = Policy()


def _records(customer: str) -> list[InputRecord]:
    """Settings (threshold 10.00), then 5.00 (triggers), then 4.00 (suppressed: one a day)."""
    bodies = [
        (TOPICS.settings_updated, settings_wire(customer, at=NOW - timedelta(hours=3))),
        (
            TOPICS.wallet_balance_changed,
            balance_wire(customer, "5.00", at=NOW - timedelta(hours=2)),
        ),
        (
            TOPICS.wallet_balance_changed,
            balance_wire(customer, "4.00", at=NOW - timedelta(hours=1)),
        ),
    ]
    return [
        InputRecord(topic, 0, offset, customer.encode(), dumps(body))
        for offset, (topic, body) in enumerate(bodies)
    ]


async def _feed(uow: UnitOfWorkFactory, records: list[InputRecord]) -> None:
    handler = BatchHandler(uow, lambda: NOW, POLICY, TOPICS)
    for record in records:  # one batch each
        await handler.handle([record])


async def test_history_is_written_with_the_batch_and_read_newest_first(
    pool: asyncpg.Pool,
) -> None:
    records = _records("hist-1")
    await _feed(lambda: PgUnitOfWork(pool), records)
    reads = PgSupportReads(pool)
    history = await reads.history("hist-1", 10)
    assert [(h["kind"], h["outcome"], h["reason"]) for h in history] == [
        ("decision", "suppressed", "daily_key_taken"),
        ("decision", "triggered", None),
        ("settings", "settings_applied", None),
    ]
    assert history[0]["data"]["offset"] == 2
    assert history[1]["data"]["business_date"] == NOW.date().isoformat()
    assert [h["id"] for h in await reads.history("hist-1", 2)] == [h["id"] for h in history[:2]]
    # decision_summary is unchanged by the settings line: explain shows the two decisions
    summary = await pool.fetch("SELECT outcome FROM decision_summary WHERE customer_id = 'hist-1'")
    assert sorted(r["outcome"] for r in summary) == ["suppressed", "triggered"]

    view = await reads.customer("hist-1", NOW, POLICY, chart_since(NOW))
    assert view.points == [
        (NOW - timedelta(hours=1), Decimal("4.00")),
        (NOW, Decimal("5.00")),
    ]
    assert view.snapshot.wallet is not None
    assert [k["business_date"] for k in view.snapshot.keys] == [NOW.date()]
    assert await reads.search("hist-", 20) == ["hist-1"]
    assert await reads.search("hist-2", 20) == []

    # The in-memory reads answer the same for the same records.
    memory = MemoryDatabase()
    await _feed(memory.unit_of_work, records)
    mem = MemorySupportReads(memory)
    strip = ("id", "data")
    assert [{k: v for k, v in h.items() if k not in strip} for h in history] == [
        {k: v for k, v in h.items() if k not in strip} for h in await mem.history("hist-1", 10)
    ]
    assert (await mem.customer("hist-1", NOW, POLICY, chart_since(NOW))).points == view.points


async def test_history_is_pruned_after_its_days(pool: asyncpg.Pool) -> None:
    await _feed(lambda: PgUnitOfWork(pool), _records("hist-old"))
    later = NOW + timedelta(days=91)
    async with pool.acquire() as conn, retention_store(conn) as store:
        report = await prune(store, Retention(history_days=90), later)
    assert report.counts["customer_history"] == 3
    assert await pool.fetchval("SELECT count(*) FROM customer_history") == 0
    async with pool.acquire() as conn, retention_store(conn) as store:
        kept = await prune(store, Retention(history_days=0), later + timedelta(days=999))
    assert kept.horizons["customer_history"] is None
