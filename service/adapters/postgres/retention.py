"""Retention on PostgreSQL: the pruner's lock, its batches, its counts, and the gauge of the
oldest row past its horizon. The SQL is in queries.sql (prune_*, count_*, retention_*); the
rules are in service/service_layer/retention.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date, datetime

import asyncpg

from service.adapters.postgres.sql import q
from service.adapters.postgres.store import Connection
from service.service_layer.retention import DAILY_KEYS, TARGETS

# The advisory lock of the pruner (the migrator's is 0x70707570): one at a time.
LOCK_ID = 0x70727565
CONNECT_TIMEOUT_SECONDS = 10.0
# One batch is one short DELETE; these bound it well above what it takes.
BATCH_TIMEOUT_SECONDS = 60.0
# A pruner never waits long for a table lock (a migration's index build, a VACUUM FULL): the
# statement fails (lock_not_available), and the next run tries again.
LOCK_TIMEOUT = "5s"
# A dry run's count(*) reads every row past a horizon: a large backlog takes a while.
COUNT_TIMEOUT_SECONDS = 600.0
GAUGE_TIMEOUT_SECONDS = 2.0


def _horizon(target: str, before: datetime) -> datetime | date:
    """Daily keys are pruned by business date: the first date kept."""
    return before.date() if target == DAILY_KEYS else before


class PgRetentionStore:
    """The pruner's side of one connection (not a pooled one: the lock is the session's)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._locked = False

    async def configure(self) -> None:
        await self._conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")

    async def try_lock(self, wait_seconds: float = 0.0) -> bool:
        if wait_seconds <= 0:
            self._locked = bool(await self._conn.fetchval(q("retention_try_lock"), LOCK_ID))
            return self._locked
        # pg_advisory_lock waits, bounded by lock_timeout: no polling.
        # (at least 1 ms: 0 would mean no timeout at all)
        await self._conn.execute(f"SET lock_timeout = '{max(int(wait_seconds * 1000), 1)}ms'")
        try:
            await self._conn.execute("SELECT pg_advisory_lock($1::bigint)", LOCK_ID)
            self._locked = True
        except asyncpg.LockNotAvailableError:
            self._locked = False
        finally:
            await self.configure()
        return self._locked

    async def unlock(self) -> None:
        """Lets the lock go; a connection that is lost or closed let it go already (and its
        error is the one to report, not this one's)."""
        if self._locked and not self._conn.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self._conn.fetchval(
                    q("retention_unlock"), LOCK_ID, timeout=CONNECT_TIMEOUT_SECONDS
                )
        self._locked = False

    async def prune(self, target: str, before: datetime, limit: int) -> int:
        return int(
            await self._conn.fetchval(
                q(f"prune_{target}"),
                _horizon(target, before),
                limit,
                timeout=BATCH_TIMEOUT_SECONDS,
            )
        )

    async def count(self, target: str, before: datetime) -> int:
        return int(
            await self._conn.fetchval(
                q(f"count_{target}"), _horizon(target, before), timeout=COUNT_TIMEOUT_SECONDS
            )
        )


@asynccontextmanager
async def retention_store(conn: Connection) -> AsyncIterator[PgRetentionStore]:
    """The store on a connection the caller owns (`auto-topup prune`)."""
    store = PgRetentionStore(conn)
    await store.configure()
    try:
        yield store
    finally:
        await store.unlock()


def connect_retention_store(
    dsn: str,
) -> Callable[[], AbstractAsyncContextManager[PgRetentionStore]]:
    """An opener for the service's pruner: each run on a connection of its own, closed after
    it (never one of the pool's, which the batches and the relay need)."""
    return lambda: _connected(dsn)


@asynccontextmanager
async def _connected(dsn: str) -> AsyncIterator[PgRetentionStore]:
    conn = await asyncpg.connect(
        dsn,
        timeout=CONNECT_TIMEOUT_SECONDS,
        server_settings={"application_name": "auto-topup retention"},
    )
    try:
        async with retention_store(conn) as store:
            yield store
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT_SECONDS)


async def oldest_prunable(
    conn: Connection | asyncpg.Pool, horizons: dict[str, datetime | None]
) -> dict[str, datetime | date | None]:
    """Per target, the time (a daily key: its business date) of the oldest row past its
    horizon (None: none, or a target kept for ever). One statement, one index entry each."""
    args = [None if (h := horizons[t]) is None else _horizon(t, h) for t in TARGETS]
    row = await conn.fetchrow(q("retention_oldest"), *args, timeout=GAUGE_TIMEOUT_SECONDS)
    assert row is not None
    return {t: row[t] for t in TARGETS}
