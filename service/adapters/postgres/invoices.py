"""Open invoices on PostgreSQL (table `open_invoices`, migration 0012): the batch store's part
(`PgInvoiceStore`, in the batch's transaction) and the overdue-notice worker's store
(`PgOverdueStore`, a transaction of its own per round). The SQL is in queries.sql."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.adapters.postgres.sql import q
from service.domain.model import OpenInvoice
from service.service_layer.ports import InvoiceChange, InvoiceRow, OutboxRecord

Connection = asyncpg.Connection | PoolConnectionProxy

# One round of the overdue worker is one short transaction; this bounds each statement.
OVERDUE_TIMEOUT_SECONDS = 30.0


class PgInvoiceStore:
    """The `InvoiceStore` part of the batch store, on the batch's connection."""

    _conn: Connection

    async def open_invoices(
        self, customer_ids: Collection[str]
    ) -> dict[str, tuple[OpenInvoice, ...]]:
        rows = await self._conn.fetch(q("open_invoices"), list(customer_ids))
        found: defaultdict[str, list[OpenInvoice]] = defaultdict(list)
        for r in rows:
            found[r["customer_id"]].append(OpenInvoice(r["invoice_request_id"], r["business_date"]))
        return {customer_id: tuple(open_) for customer_id, open_ in found.items()}

    async def add_open_invoices(self, rows: Sequence[InvoiceRow]) -> None:
        await self._conn.execute(
            q("insert_open_invoices"),
            [r.invoice_request_id for r in rows],
            [r.customer_id for r in rows],
            [r.business_date for r in rows],
            [r.amount for r in rows],
            [r.currency for r in rows],
            [r.requested_at for r in rows],
        )

    async def set_invoice_statuses(self, changes: Sequence[InvoiceChange]) -> None:
        await self._conn.execute(
            q("set_invoice_statuses"),
            [c.invoice_request_id for c in changes],
            [c.status.value for c in changes],
            [c.closed_at for c in changes],
        )


def _row(r: asyncpg.Record) -> InvoiceRow:
    return InvoiceRow(
        r["invoice_request_id"],
        r["customer_id"],
        r["business_date"],
        Decimal(r["amount"]),
        r["currency"],
        r["requested_at"],
        r["status"],
        overdue_noticed_at=r["overdue_noticed_at"],
    )


async def open_invoice_rows(
    conn: Connection | asyncpg.Pool, customer_ids: Sequence[str]
) -> list[InvoiceRow]:
    """The open invoices of these customers, whole (the dry-run replay reads through them)."""
    rows = await conn.fetch(q("read_open_invoices"), list(customer_ids))
    return [_row(r) for r in rows]


class PgOverdueStore:
    """The overdue-notice worker's `OverdueStore`: each round on a pooled connection, in one
    transaction (take the rows with SKIP LOCKED, queue the notices, mark the rows)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def notify_overdue(
        self,
        before: datetime,
        limit: int,
        build: Callable[[Sequence[InvoiceRow]], Sequence[OutboxRecord]],
        at: datetime,
    ) -> int:
        t = OVERDUE_TIMEOUT_SECONDS
        async with self._pool.acquire() as conn, conn.transaction():
            taken = [
                _row(r)
                for r in await conn.fetch(q("take_overdue_invoices"), before, limit, timeout=t)
            ]
            if not taken:
                return 0
            records = build(taken)
            if records:
                await conn.execute(
                    q("insert_outbox"),
                    [r.dedupe_key for r in records],
                    [r.topic for r in records],
                    [r.key for r in records],
                    [r.value for r in records],
                    [json.dumps(list(r.headers)) for r in records],
                    timeout=t,
                )
            ids = [r.invoice_request_id for r in taken]
            await conn.execute(q("mark_overdue_noticed"), ids, at, timeout=t)
        return len(taken)
