"""The customers' append-only history on PostgreSQL: the batch's write (one statement)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.adapters.postgres.sql import q
from service.service_layer.history import HistoryEntry


async def add_history(
    conn: asyncpg.Connection | PoolConnectionProxy, entries: Sequence[HistoryEntry]
) -> None:
    """One multi-row insert for the whole batch (no round trip per row)."""
    if not entries:
        return
    await conn.execute(
        q("insert_history"),
        [e.customer_id for e in entries],
        [e.at for e in entries],
        [e.kind for e in entries],
        [e.outcome for e in entries],
        [e.reason for e in entries],
        [e.detail for e in entries],
        [json.dumps(e.data, separators=(",", ":")) for e in entries],
    )
