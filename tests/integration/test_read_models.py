"""The operator commands' read models against a real PostgreSQL: the read-only pool of a
dry-run replay, the outbox backlog, and the readiness ping."""

from __future__ import annotations

import asyncpg
import pytest

from service.adapters.postgres.connection import ping
from service.adapters.postgres.migrate import migration_files
from service.adapters.postgres.outbox_store import PgOutboxRows
from service.adapters.postgres.read_models import NotMigrated, outbox_backlog, read_only_pool
from service.adapters.postgres.store import PgUnitOfWork
from service.service_layer.ports import OutboxRecord
from tests.pg_tools import PG_QUERY_SECONDS, close_pool


async def test_the_read_only_pool_reads_and_postgres_refuses_its_writes(database_url: str) -> None:
    pool = await read_only_pool(database_url)
    try:
        await ping(pool, timeout=PG_QUERY_SECONDS)
        assert await outbox_backlog(pool, timeout=PG_QUERY_SECONDS) == 0
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await pool.execute("DELETE FROM outbox", timeout=PG_QUERY_SECONDS)
    finally:
        await close_pool(pool)


async def test_the_read_only_pool_names_the_migrations_a_database_lacks(
    pool: asyncpg.Pool, database_url: str
) -> None:
    latest = migration_files()[-1][0]
    await pool.execute("DELETE FROM schema_migrations WHERE version = $1", latest)
    with pytest.raises(NotMigrated, match=f"lacks migrations {latest};"):
        await read_only_pool(database_url)


async def test_the_backlog_counts_what_is_not_published_yet(pool: asyncpg.Pool) -> None:
    records = [OutboxRecord(f"backlog-{n}", "invoice-requested", b"c", b"v", ()) for n in range(3)]
    async with PgUnitOfWork(pool) as uow:
        await uow.store.add_outbox(records)
        await uow.commit()
    assert await outbox_backlog(pool) == 3
    rows = PgOutboxRows(pool)
    leased = await rows.lease(1, 60)
    await rows.published([leased[0].id])
    assert await outbox_backlog(pool) == 2
