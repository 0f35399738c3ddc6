"""Database failures injected for real, through the real handler, processor and PostgreSQL:
held locks under a role with lock and statement timeouts, a database turned read-only, inputs
PostgreSQL could not store, a record that fails for an unforeseen reason."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service.adapters.postgres.errors import is_transient
from service.adapters.postgres.store import PgUnitOfWork
from service.adapters.startup import prepare_database
from service.config import Settings, Topics
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler, BatchReport
from service.service_layer.ports import CountKey, InputRecord, Tally
from service.service_layer.processor import BatchProcessor
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.pg_tools import PG_CONNECT_SECONDS, close_pool, connect, create_pool

TOPICS = Topics()
GUARD_SECONDS = 60  # a test that waits longer than this has failed (it never paces the work)


@dataclass
class Watch:
    """The processor's is_transient, noting which SQLSTATEs it was asked about."""

    seen: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, exc: BaseException) -> bool:
        cause: BaseException | None = exc
        while cause is not None:  # (a connection dropped on release names what failed first)
            self.seen[getattr(cause, "sqlstate", None) or type(cause).__name__] += 1
            cause = cause.__context__
        self.changed.set()
        return is_transient(exc)

    async def until(self, state: str, times: int) -> None:
        while self.seen[state] < times:
            self.changed.clear()
            await self.changed.wait()


class CountingUow:
    """The handler's unit of work factory, counting transactions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.transactions = 0

    def __call__(self) -> PgUnitOfWork:
        self.transactions += 1
        return PgUnitOfWork(self.pool)


def _records(topic: str, bodies: list[dict[str, Any]]) -> list[InputRecord]:
    return [
        InputRecord(topic, 0, i, str(b["customer_id"]).encode(), dumps(b))
        for i, b in enumerate(bodies)
    ]


def _handler(uow: Callable[[], PgUnitOfWork]) -> BatchHandler:
    return BatchHandler(uow, lambda: NOW, Policy(), TOPICS)


def _processor(handler: BatchHandler, watch: Callable[[BaseException], bool]) -> BatchProcessor:
    return BatchProcessor(handler, watch, initial_backoff=0.02, max_backoff=0.2)


def _as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def _server_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


async def _dead_letters(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """The reasons of the dead letters in the outbox."""
    rows = await conn.fetch("SELECT headers FROM outbox WHERE topic = $1", TOPICS.dead_letter)
    reasons = []
    for row in rows:
        headers = row["headers"]
        headers = json.loads(headers) if isinstance(headers, str) else headers
        found = dict((name, base64.b64decode(value).decode()) for name, value in headers)
        reasons.append(found["dlq_reason"])
    return reasons


async def _invoices(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    n = await conn.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1", TOPICS.invoice_requested
    )
    return int(n)


CUSTOMERS = [f"cust-{i}" for i in range(40)]


async def _seed_settings(pool: asyncpg.Pool) -> None:
    at = NOW - timedelta(hours=1)
    await _handler(lambda: PgUnitOfWork(pool)).handle(
        _records(TOPICS.settings_updated, [settings_wire(c, at=at) for c in CUSTOMERS])
    )


def _due_balances() -> list[InputRecord]:
    at = NOW - timedelta(minutes=5)
    return _records(
        TOPICS.wallet_balance_changed, [balance_wire(c, "5.00", at=at) for c in CUSTOMERS]
    )


# --- lock waits -------------------------------------------------------------------------------


# --- a read-only primary ----------------------------------------------------------------------
# First in this file: after the held-locks tests below it waited forever for the read-only
# errors on a fresh stack (order-dependent; not understood yet, see the session note).


async def test_a_read_only_database_is_waited_for_then_everything_applied(
    database_url: str, pool: asyncpg.Pool
) -> None:
    await _seed_settings(pool)
    name = urlsplit(database_url).path.lstrip("/")
    # The service's own pool (prepare_database: migrations, then the pool and its reset hook).
    service_pool = await prepare_database(Settings.model_validate({"DATABASE_URL": database_url}))
    server = await connect(_server_url(database_url))
    watch = Watch()
    processor = _processor(_handler(lambda: PgUnitOfWork(service_pool)), watch)
    task: asyncio.Task[Any] | None = None
    try:
        # A failover to a read-only node: sessions end, the new ones are read-only.
        await server.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        await server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        task = asyncio.create_task(processor.process(_due_balances()))
        await asyncio.wait_for(watch.until("25006", 3), GUARD_SECONDS)
        assert not task.done()
        # Back to read-write (for new sessions only: the pool must not reuse its old ones).
        await server.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        report = await asyncio.wait_for(task, GUARD_SECONDS)
    finally:
        if task is not None and not task.done():  # failed: never hang on a retrying task
            task.cancel()
        await server.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await server.close()
        service_pool.terminate()
    assert report.counts[CountKey.decision("triggered")] == len(CUSTOMERS)
    assert await _dead_letters(pool) == []
    assert await _invoices(pool) == len(CUSTOMERS)


@pytest.fixture
async def timeout_role(database_url: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A role of this test, with the test database's tables granted; yields its name and a
    superuser connection to the test database. Dropped afterwards."""
    role = f"auto_topup_to_{uuid.uuid4().hex[:10]}"
    admin = await connect(database_url)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        await admin.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        await admin.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
        )
        await admin.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        yield role, admin
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.close()
        server = await connect(_server_url(database_url))
        try:
            await server.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await server.close()


@pytest.mark.parametrize(
    ("lock_timeout", "statement_timeout", "sqlstate"),
    [("300ms", "5s", "55P03"), ("0", "300ms", "57014")],
    ids=["lock_timeout", "statement_timeout"],
)
async def test_held_locks_are_waited_for_never_dead_lettered(
    database_url: str,
    pool: asyncpg.Pool,
    timeout_role: tuple[str, asyncpg.Connection],
    lock_timeout: str,
    statement_timeout: str,
    sqlstate: str,
) -> None:
    role, admin = timeout_role
    await admin.execute(f"ALTER ROLE \"{role}\" SET lock_timeout = '{lock_timeout}'")
    await admin.execute(f"ALTER ROLE \"{role}\" SET statement_timeout = '{statement_timeout}'")
    await _seed_settings(pool)
    limited = await create_pool(_as_user(database_url, role), min_size=1, max_size=2)
    watch = Watch()
    processor = _processor(_handler(lambda: PgUnitOfWork(limited)), watch)
    try:
        async with admin.transaction():  # another session holds every wallet's row lock
            await admin.execute("SELECT customer_id FROM wallets FOR UPDATE")
            task = asyncio.create_task(processor.process(_due_balances()))
            # Long enough (some seconds) that splitting the batch would have reached and
            # dead-lettered single records, had the timeouts been taken for their fault.
            await asyncio.wait_for(watch.until(sqlstate, 15), GUARD_SECONDS)
            assert not task.done()
            assert await _dead_letters(pool) == []
        # The lock is released: everything is applied.
        report = await asyncio.wait_for(task, GUARD_SECONDS)
    finally:
        await close_pool(limited)
    assert report.counts[CountKey.decision("triggered")] == len(CUSTOMERS)
    assert not [k for k in report.counts if k.tally is Tally.DEAD_LETTER]
    assert await _dead_letters(pool) == []
    assert await _invoices(pool) == len(CUSTOMERS)


# --- inputs PostgreSQL cannot store -----------------------------------------------------------

_B, _S = TOPICS.wallet_balance_changed, TOPICS.settings_updated
_AT = NOW - timedelta(minutes=5)


def _number(body: dict[str, Any], field_name: str, literal: str) -> bytes:
    """The body with one field as a raw JSON number (json.dumps cannot write 0e1000000)."""
    marker = "__number__"
    return json.dumps({**body, field_name: marker}).replace(f'"{marker}"', literal).encode()


UNSTORABLE: dict[str, tuple[str, bytes]] = {
    "event_id_nul": (_B, dumps(balance_wire("odd-1", "5.00", at=_AT, event_id="a\u0000b"))),
    "event_id_surrogate": (_B, dumps(balance_wire("odd-1", "5.00", at=_AT, event_id="\ud800"))),
    "caused_by_nul": (_B, dumps(balance_wire("odd-1", "5.00", at=_AT, caused_by="x\u0000"))),
    "settings_event_id_surrogate": (_S, dumps(settings_wire("odd-1", at=_AT, event_id="\udfff"))),
    "sequence_2_63": (_B, dumps(balance_wire("odd-1", "5.00", at=_AT, sequence=2**63))),
    "version_2_63": (_S, dumps(settings_wire("odd-1", at=_AT, version=2**63))),
    "balance_0e1000000": (_B, _number(balance_wire("odd-1", "0", at=_AT), "balance", "0e1000000")),
    "balance_-0e40000": (_B, _number(balance_wire("odd-1", "0", at=_AT), "balance", "-0e40000")),
    "threshold_0e1000000": (
        _S,
        _number(settings_wire("odd-1", at=_AT), "limit_threshold", "0e1000000"),
    ),
    "trigger_1e-20000": (_S, _number(settings_wire("odd-1", at=_AT), "trigger_amount", "1e-20000")),
}


@pytest.mark.parametrize("case", sorted(UNSTORABLE))
async def test_what_postgresql_cannot_store_is_a_schema_violation(
    pool: asyncpg.Pool, case: str
) -> None:
    topic, value = UNSTORABLE[case]
    good = balance_wire("fine-1", "50.00", at=_AT)
    batch = [
        InputRecord(topic, 0, 0, b"odd-1", value),
        InputRecord(_B, 1, 0, b"fine-1", dumps(good)),
    ]
    uow = CountingUow(pool)
    report = await _processor(_handler(uow), is_transient).process(batch)
    assert uow.transactions == 1  # no failure, no isolation
    assert report.counts[CountKey.dead_letter("schema_violation")] == 1
    assert await _dead_letters(pool) == ["schema_violation"]
    assert await pool.fetchval("SELECT balance FROM wallets WHERE customer_id = 'fine-1'") == 50


# --- one record that fails for an unforeseen reason -------------------------------------------


async def test_one_failing_record_in_2000_is_found_in_at_most_14_more_transactions(
    pool: asyncpg.Pool,
) -> None:
    # A failure nothing foresaw, for one record: a trigger that refuses its row.
    await pool.execute(
        """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.balance_event_id = 'poison' THEN
                RAISE EXCEPTION 'refusing %', NEW.balance_event_id;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON wallets
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """
    )
    bodies = [balance_wire(f"c-{i:04d}", "50.00", at=_AT) for i in range(2000)]
    bodies[1234]["event_id"] = "poison"
    uow = CountingUow(pool)
    report = await _processor(_handler(uow), is_transient).process(_records(_B, bodies))
    # 1 failed, 1 to read which customers share a partner (rolled back), at most 13 to find
    # it and apply the others, 1 to dead-letter it.
    assert uow.transactions <= 1 + 1 + 13 + 1, uow.transactions
    assert report.counts[CountKey.consumed(_B, "applied")] == 1999
    assert await _dead_letters(pool) == ["processing_error"]
    applied = await pool.fetchval("SELECT count(*) FROM wallets WHERE balance IS NOT NULL")
    assert applied == 1999
    assert await pool.fetchval("SELECT balance FROM wallets WHERE customer_id = 'c-1234'") is None


# --- a runaway counter ------------------------------------------------------------------------


async def _apply(pool: asyncpg.Pool, topic: str, body: dict[str, Any]) -> BatchReport:
    return await _handler(lambda: PgUnitOfWork(pool)).handle(_records(topic, [body]))


async def test_a_frozen_sequence_is_reset_and_the_wallet_tops_up_again(
    pool: asyncpg.Pool,
) -> None:
    from service.adapters.postgres.counters import Counter, reset_counter

    at = NOW - timedelta(hours=2)
    await _apply(pool, _S, settings_wire("runaway", at=at))
    # A producer's bug: the largest sequence the contract allows. Accepted, and then...
    frozen = await _apply(pool, _B, balance_wire("runaway", "500", at=at, sequence=2**63 - 1))
    assert frozen.counts[CountKey.consumed(_B, "applied")] == 1
    # ...every later balance is stale, however low.
    low = balance_wire("runaway", "5.00", at=at + timedelta(minutes=1), sequence=42)
    assert (await _apply(pool, _B, low)).counts[CountKey.consumed(_B, "stale")] == 1
    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        done = await reset_counter(
            conn, "runaway", Counter.SEQUENCE, 41, by="alice", why="INC-7: bad sequence", now=NOW
        )
    assert (done.old_value, done.new_value) == (2**63 - 1, 41)
    again = await _apply(pool, _B, {**low, "event_id": str(uuid.uuid4())})
    assert again.counts[CountKey.decision("triggered")] == 1
    assert await _invoices(pool) == 1
    audit = await pool.fetchrow("SELECT * FROM counter_audit")
    assert audit is not None
    assert (audit["customer_id"], audit["counter"], audit["old_value"], audit["new_value"]) == (
        "runaway",
        "sequence",
        2**63 - 1,
        41,
    )
    assert (audit["reset_by"], audit["why"], audit["reset_at"]) == (
        "alice",
        "INC-7: bad sequence",
        NOW,
    )
