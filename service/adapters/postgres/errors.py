"""Which database failures are worth retrying."""

from __future__ import annotations

import asyncio

import asyncpg

_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P")


def is_transient(exc: BaseException) -> bool:
    """True for failures that go away by themselves: connections, deadlocks, restarts."""
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        return state.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    return False
