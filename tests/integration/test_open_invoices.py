"""Open invoices on a real PostgreSQL: the batch store's queries (open_invoices,
insert_open_invoices, set_invoice_statuses) and the overdue worker's SKIP LOCKED batch.

Every row is dated from NOW, a fixed instant: nothing depends on the host's clock."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg

from service.adapters.postgres.invoices import PgOverdueStore
from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.model import InvoiceStatus, OpenInvoice
from service.service_layer.overdue import OverdueNotices
from service.service_layer.ports import InvoiceChange, InvoiceRow
from tests.pg_tools import PG_QUERY_SECONDS

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TOPICS = Topics()


def _row(invoice_id: str, customer: str, requested_at: datetime) -> InvoiceRow:
    return InvoiceRow(
        invoice_id, customer, requested_at.date(), Decimal("100.10"), "USD", requested_at
    )


async def _rows(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM open_invoices", timeout=PG_QUERY_SECONDS)
    return {r["invoice_request_id"]: r for r in rows}


async def test_the_batch_store_reads_inserts_and_closes_open_invoices(pool: asyncpg.Pool) -> None:
    async with PgUnitOfWork(pool) as uow:
        store = uow.store
        await store.add_open_invoices(
            [
                _row("b", "c-1", NOW),
                _row("a", "c-1", NOW - DAY),
                _row("x", "c-2", NOW),
                _row("y", "c-3", NOW),
            ]
        )
        # the same invoice again (a redelivered batch): the row stays as it was
        await store.add_open_invoices(
            [InvoiceRow("a", "c-1", date(2020, 1, 1), Decimal(1), "EUR", NOW)]
        )
        await uow.commit()
    async with PgUnitOfWork(pool) as uow:
        found = await uow.store.open_invoices(["c-1", "c-2", "c-9"])
        assert found == {
            "c-1": (OpenInvoice("a", (NOW - DAY).date()), OpenInvoice("b", NOW.date())),
            "c-2": (OpenInvoice("x", NOW.date()),),
        }
        await uow.store.set_invoice_statuses(
            [
                InvoiceChange("a", InvoiceStatus.PAID, NOW),
                InvoiceChange("b", InvoiceStatus.ISSUED, None),
                InvoiceChange("zzz", InvoiceStatus.VOID, NOW),  # unknown: nothing
            ]
        )
        await uow.commit()
    async with PgUnitOfWork(pool) as uow:
        # a closed invoice stays closed
        await uow.store.set_invoice_statuses([InvoiceChange("a", InvoiceStatus.ISSUED, None)])
        assert await uow.store.open_invoices(["c-1"]) == {"c-1": (OpenInvoice("b", NOW.date()),)}
        await uow.commit()
    rows = await _rows(pool)
    assert (rows["a"]["status"], rows["a"]["closed_at"]) == ("paid", NOW)
    assert (rows["a"]["amount"], rows["a"]["currency"]) == (Decimal("100.10"), "USD")
    assert (rows["b"]["status"], rows["b"]["closed_at"]) == ("issued", None)
    assert "zzz" not in rows


async def _outbox_notices(pool: asyncpg.Pool) -> list[dict[str, object]]:
    values = await pool.fetch(
        "SELECT value FROM outbox WHERE topic = $1 ORDER BY id", TOPICS.auto_topup_notice
    )
    return [json.loads(r["value"]) for r in values]


async def test_the_worker_takes_a_bounded_batch_skipping_locked_rows(pool: asyncpg.Pool) -> None:
    old = NOW - 8 * DAY
    async with PgUnitOfWork(pool) as uow:
        await uow.store.add_open_invoices(
            [_row(f"i{n}", f"c-{n}", old + n * timedelta(minutes=1)) for n in range(5)]
            + [_row("young", "c-young", NOW - 6 * DAY)]
        )
        await uow.store.set_invoice_statuses([InvoiceChange("i4", InvoiceStatus.VOID, NOW)])
        await uow.commit()

    # Another transaction holds i0 (a batch closing it, say): the worker skips it, not waits.
    holder = await pool.acquire()
    tx = holder.transaction()
    await tx.start()
    await holder.execute("SELECT 1 FROM open_invoices WHERE invoice_request_id = 'i0' FOR UPDATE")
    try:
        worker = OverdueNotices(
            PgOverdueStore(pool), lambda: NOW, TOPICS, 7, interval=60, batch_size=2
        )
        first = await asyncio.wait_for(worker.run_once(), PG_QUERY_SECONDS)
        assert first == 2
        assert [n["invoice_request_id"] for n in await _outbox_notices(pool)] == ["i1", "i2"]
    finally:
        await tx.rollback()
        await pool.release(holder)
    assert await worker.run_once() == 2  # i0 now, and i3
    assert await worker.run_once() == 0  # i4 is closed, "young" is not overdue yet
    notices = await _outbox_notices(pool)
    assert sorted(str(n["invoice_request_id"]) for n in notices) == ["i0", "i1", "i2", "i3"]
    assert {n["type"] for n in notices} == {"invoice_overdue"}
    # whole days open (i1 to i3 were requested minutes after 8 days ago)
    days = {n["invoice_request_id"]: n["open_days"] for n in notices}
    assert days == {"i0": 8, "i1": 7, "i2": 7, "i3": 7}
    assert notices[0]["amount"] == "100.10"
    rows = await _rows(pool)
    assert {i for i, r in rows.items() if r["overdue_noticed_at"] == NOW} == {
        "i0",
        "i1",
        "i2",
        "i3",
    }
    assert rows["i4"]["overdue_noticed_at"] is None


async def test_two_workers_at_once_notice_each_invoice_once(pool: asyncpg.Pool) -> None:
    async with PgUnitOfWork(pool) as uow:
        await uow.store.add_open_invoices(
            [_row(f"i{n}", f"c-{n}", NOW - 10 * DAY) for n in range(40)]
        )
        await uow.commit()
    workers = [
        OverdueNotices(PgOverdueStore(pool), lambda: NOW, TOPICS, 7, interval=60, batch_size=3)
        for _ in range(2)
    ]

    async def drain(worker: OverdueNotices) -> int:
        total = 0
        while taken := await worker.run_once():
            total += taken
        return total

    counts = await asyncio.wait_for(asyncio.gather(*(drain(w) for w in workers)), PG_QUERY_SECONDS)
    assert sum(counts) == 40
    outbox = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1", TOPICS.auto_topup_notice
    )
    assert outbox == 40
