"""Connections to PostgreSQL for the tests and their harnesses, with named bounds: never
asyncpg's defaults (60 s to connect, no limit at all on a query, on closing a connection or on
waiting for a pooled one)."""

from __future__ import annotations

import asyncio

import asyncpg

# The local server connects and answers in milliseconds, but it may be restarting (the chaos
# run restarts it) and a slow, loaded machine is slow at everything: generous, so that only
# a server that does not answer at all fails a test.
PG_CONNECT_SECONDS = 60.0  # one connection (also: waiting for one of a pool's)
PG_QUERY_SECONDS = 120.0  # one query or command: a batch's rows at most, or a test's database


async def connect(url: str) -> asyncpg.Connection:
    """A connection whose queries (and its close) are bounded by PG_QUERY_SECONDS."""
    return await asyncpg.connect(url, timeout=PG_CONNECT_SECONDS, command_timeout=PG_QUERY_SECONDS)


async def create_pool(url: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """A pool of such connections. Acquire from it with `timeout=PG_CONNECT_SECONDS`, and
    close it with `close_pool`."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=PG_CONNECT_SECONDS,
        command_timeout=PG_QUERY_SECONDS,
    )
    return pool


async def close_pool(pool: asyncpg.Pool) -> None:
    """Closes a pool gracefully: waits for its connections to be released, at most
    PG_QUERY_SECONDS (asyncpg's close waits for ever; it terminates the pool on a timeout)."""
    await asyncio.wait_for(pool.close(), PG_QUERY_SECONDS)
