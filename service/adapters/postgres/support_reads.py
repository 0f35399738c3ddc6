"""The support page's reads on PostgreSQL (service_layer/support.py `SupportReads`): plain
SELECTs on the service's pool, in one read-only REPEATABLE READ transaction, no lock taken."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from service.adapters.postgres.read_models import QUERY_TIMEOUT_SECONDS, snapshot_in
from service.adapters.postgres.sql import q
from service.adapters.postgres.store import Connection
from service.domain import rules
from service.service_layer.explain_report import Row
from service.service_layer.support import (
    DEAD_LETTER_ROWS,
    HISTORY_ROWS,
    NOTICE_ROWS,
    BalancePoint,
    CustomerView,
)

T = QUERY_TIMEOUT_SECONDS


def _history_row(r: asyncpg.Record) -> Row:
    row: dict[str, Any] = dict(r)
    row["data"] = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    return row


async def _history(conn: Connection | asyncpg.Pool, customer_id: str, limit: int) -> list[Row]:
    return [
        _history_row(r)
        for r in await conn.fetch(q("support_history"), customer_id, limit, timeout=T)
    ]


async def balance_points(
    conn: Connection | asyncpg.Pool, customer_id: str, since: datetime
) -> list[BalancePoint]:
    """The balance chart's points from `since` on, oldest first: the balance at each top-up
    the history records, and the last balance stored. (One function: per-day lows would be
    added here.)"""
    rows = await conn.fetch(q("support_balance_points"), customer_id, since, timeout=T)
    return [(r["at"], r["balance"]) for r in rows]


class PgSupportReads:
    def __init__(self, pool: asyncpg.Pool, notice_topic: str = "auto-topup-notice") -> None:
        self._pool = pool
        self._notice_topic = notice_topic

    async def customer(
        self, customer_id: str, now: datetime, policy: rules.Policy, chart_since: datetime
    ) -> CustomerView:
        async with (
            self._pool.acquire(timeout=T) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            snap = await snapshot_in(conn, customer_id, now, policy)
            history = await _history(conn, customer_id, HISTORY_ROWS)
            points = await balance_points(conn, customer_id, chart_since)
            rejected = await conn.fetch(
                q("support_rejected_settings"), customer_id, DEAD_LETTER_ROWS, timeout=T
            )
            invoices = await conn.fetch(q("support_open_invoices"), customer_id, timeout=T)
            notices = await conn.fetch(
                q("support_notices"), self._notice_topic, customer_id.encode(), NOTICE_ROWS,
                timeout=T,
            )  # fmt: skip
        return CustomerView(
            snap,
            history,
            points,
            [dict(r) for r in rejected],
            [dict(r) for r in invoices],
            [json.loads(r["value"]) for r in notices if r["value"] is not None],
        )

    async def history(self, customer_id: str, limit: int) -> list[Row]:
        return await _history(self._pool, customer_id, limit)

    async def search(self, prefix: str, limit: int) -> list[str]:
        rows = await self._pool.fetch(q("support_search"), prefix, limit, timeout=T)
        return [r["customer_id"] for r in rows]
