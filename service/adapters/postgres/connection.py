"""One PostgreSQL connection for a short piece of work, and the failures that mean the
database is away or not migrated (what the operator commands tell apart)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import asyncpg

from service.adapters.postgres.sql import q

T = TypeVar("T")
CONNECT_TIMEOUT_SECONDS = 10.0

Connection: TypeAlias = asyncpg.Connection
Pool: TypeAlias = asyncpg.Pool

# A schema older than the code: a table or a column the migrations add is missing.
NOT_MIGRATED: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedColumnError,
)
# A table is missing (explain tells that one apart from the others).
UNDEFINED_TABLE: tuple[type[BaseException], ...] = (asyncpg.UndefinedTableError,)
# Any failure of the database's or of the client's, the network's among them.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
# A failure the database or its client reports (no plain network error).
POSTGRES_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError)


async def on_connection(
    dsn: str,
    work: Callable[[Connection], Awaitable[T]],
    timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> T:
    """Runs `work` on a connection of its own, closed after it."""
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        return await work(conn)
    finally:
        await conn.close()


async def ping(pool: Pool, timeout: float) -> None:
    """Raises unless the database answers a query within `timeout` seconds."""
    await pool.fetchval(q("ping"), timeout=timeout)
