"""What a database failure means, and so what to do about it.

- TRANSIENT: it goes away by itself: a connection lost or refused, a server shutting down or
  starting, a lock or statement timeout, a cancelled query, a read-only primary (a failover), a
  serialization failure, a deadlock, resources exhausted. Wait and retry with backoff; never
  skip a record because of it.
- CONFIGURATION: the settings are wrong: DATABASE_URL's form, user, password, database or the
  role's privileges. Start-up stops with one line naming DATABASE_URL (exit code 2); a running
  service waits for an operator (a batch is retried, never dead-lettered for it).
- DATA: the statement fails for what it writes (a value PostgreSQL cannot store, a bug): the
  same statement fails again, so the processor isolates the record that causes it.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

import asyncpg
from asyncpg.exceptions import (
    ClientConfigurationError,
    InternalClientError,
    InvalidCachedStatementError,
)

# The setting that a CONFIGURATION failure names.
SETTING = "DATABASE_URL"

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_TRANSIENT_CLASSES = (
    "08",  # connection exception
    "53",  # insufficient resources (disk full, out of memory, too many connections)
    "57P",  # operator intervention: admin/crash shutdown, cannot connect now, idle timeout
)
_TRANSIENT_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "40003",  # statement_completion_unknown
        "57014",  # query_canceled: statement_timeout, pg_cancel_backend
        "55P03",  # lock_not_available: lock_timeout, NOWAIT
        "25006",  # read_only_sql_transaction: a primary turned read-only (failover)
        "25P03",  # idle_in_transaction_session_timeout
        "25P04",  # transaction_timeout (PostgreSQL 17)
        "58030",  # io_error
        "72000",  # snapshot_too_old
    }
)
_CONFIGURATION_STATES = frozenset(
    {
        "28000",  # invalid_authorization_specification: no such role, pg_hba refuses
        "28P01",  # invalid_password
        "3D000",  # invalid_catalog_name: no such database
        "42501",  # insufficient_privilege
        "57P04",  # database_dropped
    }
)
_DATA_STATES = frozenset(
    {
        "53400",  # configuration_limit_exceeded (e.g. locks per transaction): a smaller batch
    }
)


class Kind(StrEnum):
    TRANSIENT = "transient"
    CONFIGURATION = "configuration"
    DATA = "data"


def classify(exc: BaseException) -> Kind:
    """What `exc`, raised while talking to PostgreSQL, means."""
    if isinstance(exc, ClientConfigurationError):  # a DSN asyncpg cannot use
        return Kind.CONFIGURATION
    if isinstance(exc, InvalidCachedStatementError):  # a schema change: asyncpg re-prepares
        return Kind.TRANSIENT
    if isinstance(exc, asyncpg.PostgresError):  # by SQLSTATE (asyncpg's DataError: "22000")
        state = getattr(exc, "sqlstate", "") or ""
        if state in _CONFIGURATION_STATES:
            return Kind.CONFIGURATION
        if state in _DATA_STATES:
            return Kind.DATA
        if state in _TRANSIENT_STATES or state.startswith(_TRANSIENT_CLASSES):
            return Kind.TRANSIENT
        return Kind.DATA
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return Kind.TRANSIENT
    # A closed connection or pool, a stale type cache, no read-write host among the targets.
    if isinstance(exc, asyncpg.InterfaceError | InternalClientError):
        return Kind.TRANSIENT
    return Kind.DATA


def is_transient(exc: BaseException) -> bool:
    """Worth retrying while running: whatever is not about the records being written. A
    CONFIGURATION failure (a password rotated under a running service) counts: the batch waits
    for an operator instead of being dead-lettered record by record."""
    return classify(exc) is not Kind.DATA


def is_misconfiguration(exc: BaseException) -> bool:
    """Start-up stops on these: waiting does not fix a wrong password or database name."""
    return classify(exc) is Kind.CONFIGURATION


def describe(exc: BaseException) -> str:
    """One line: the failure's class and message (no DSN: it may hold a password)."""
    text = " ".join(str(exc).split()) or "(no message)"
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def problem_line(exc: BaseException) -> tuple[str, int]:
    """What a command prints for a database failure, and its exit code: 2 for a
    misconfiguration (naming DATABASE_URL), 1 otherwise."""
    kind = classify(exc)
    if kind is Kind.CONFIGURATION:
        return f"configuration error: {SETTING}: {describe(exc)}", 2
    if kind is Kind.TRANSIENT:
        return f"error: cannot reach PostgreSQL: {describe(exc)}", 1
    return f"error: PostgreSQL: {describe(exc)}", 1


class ReadOnlyConnection(asyncpg.InterfaceError):
    """Raised by `drop_read_only` when a connection is released: the pool terminates it
    instead of reusing it. A connection problem like any other (TRANSIENT)."""


async def drop_read_only(conn: asyncpg.Connection) -> None:
    """The pool's reset hook (asyncpg calls it before a released connection is reused): a
    session on a read-only server (a demoted primary, default_transaction_read_only) is
    dropped, so that the next transaction connects again, to the primary DATABASE_URL names
    now. PostgreSQL 14+ reports both settings to the client: this costs no round trip. Then
    the default reset."""
    settings = conn.get_settings()
    for name in ("default_transaction_read_only", "in_hot_standby"):
        if getattr(settings, name, "off") == "on":
            raise ReadOnlyConnection(f"{name} is on")
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)
