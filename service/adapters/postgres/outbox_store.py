"""The relay's side of the outbox table on PostgreSQL (the relay itself is
adapters/kafka/relay.py)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from service.adapters.postgres.sql import q
from service.service_layer.outbox_rows import LeasedRow


class PgOutboxRows:
    """OutboxRows (service_layer/outbox_rows.py) on a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def lease(self, limit: int, seconds: float) -> list[LeasedRow]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(q("lease_outbox"), limit, seconds)
        return [
            LeasedRow(r["id"], r["topic"], r["key"], r["value"], r["headers"], r["attempts"])
            for r in sorted(rows, key=lambda r: int(r["id"]))
        ]

    async def published(self, ids: Sequence[int]) -> None:
        if ids:
            await self._pool.execute(q("mark_published"), list(ids))

    async def retry_later(self, failed: Sequence[tuple[int, str, float]]) -> None:
        if failed:
            ids, errors, delays = zip(*failed, strict=True)
            await self._pool.execute(q("postpone_outbox"), ids, errors, delays)

    async def set_aside(self, refused: Sequence[tuple[int, str]]) -> None:
        if refused:
            ids, errors = zip(*refused, strict=True)
            await self._pool.execute(q("set_aside_outbox"), ids, errors)
