"""The outbox table's side of the relay and of `auto-topup outbox`, against a real PostgreSQL:
what is leased, how each result is marked, what operators see and retry, and migration 0007's
rewrite of the dead-letter keys queued before it."""

from __future__ import annotations

import re
from importlib.resources import files

import asyncpg
import pytest

from service.adapters.postgres.outbox_admin import (
    RecordNotFound,
    RecordNotRetriable,
    retry,
    set_aside_count,
    troubled_records,
)
from service.adapters.postgres.outbox_store import PgOutboxRows
from service.adapters.postgres.sql import q
from service.adapters.postgres.store import PgUnitOfWork
from service.service_layer.outbox import dead_letter_key
from service.service_layer.ports import InputRecord, OutboxRecord
from tests.pg_tools import PG_CONNECT_SECONDS


async def _queue(pool: asyncpg.Pool, *records: OutboxRecord) -> list[int]:
    async with PgUnitOfWork(pool) as uow:
        await uow.store.add_outbox(list(records))
        await uow.commit()
    keys = [r.dedupe_key for r in records]
    rows = await pool.fetch("SELECT id FROM outbox WHERE dedupe_key = ANY($1) ORDER BY id", keys)
    return [r["id"] for r in rows]


def _record(n: int, topic: str = "invoice-requested") -> OutboxRecord:
    return OutboxRecord(f"event-{n}", topic, b"cust", f"value {n}".encode(), ())


async def test_each_result_is_marked_and_only_due_records_are_leased(pool: asyncpg.Pool) -> None:
    ids = await _queue(pool, *(_record(n) for n in range(4)))
    rows = PgOutboxRows(pool)

    leased = await rows.lease(10, 60)
    assert [r.id for r in leased] == ids
    assert [r.attempts for r in leased] == [0] * 4
    assert await rows.lease(10, 60) == []  # leased: not again

    await rows.published([ids[0]])
    await rows.set_aside([(ids[1], "MessageSizeTooLargeError: too large")])
    await rows.retry_later([(ids[2], "NotLeaderForPartitionError", 3600.0)])
    await rows.retry_later([(ids[3], "KafkaTimeoutError", 0.0)])

    # Published, set aside, waiting an hour: not leased. Due again at once: leased.
    again = await rows.lease(10, 60)
    assert [(r.id, r.attempts) for r in again] == [(ids[3], 1)]
    assert await pool.fetchval(q("outbox_backlog")) == 2  # the waiting ones, not set aside
    assert await set_aside_count(pool) == 1

    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        troubles = await troubled_records(conn, 100)
    assert [(t.id, t.state, t.attempts) for t in troubles] == [
        (ids[1], "set_aside", 1),
        (ids[2], "retrying", 1),
        (ids[3], "retrying", 1),
    ]
    assert troubles[0].last_error == "MessageSizeTooLargeError: too large"
    assert troubles[0].value_bytes == len(b"value 1")
    assert troubles[0].dedupe_key == "event-1"


async def test_retry_makes_records_due_again_and_refuses_what_it_cannot(
    pool: asyncpg.Pool,
) -> None:
    ids = await _queue(pool, *(_record(n) for n in range(5)))
    rows = PgOutboxRows(pool)
    await rows.lease(10, 60)
    await rows.published([ids[0]])
    await rows.set_aside([(ids[1], "e1"), (ids[2], "e2")])
    await rows.retry_later([(ids[3], "e3", 3600.0)])
    await rows.retry_later([])  # nothing: no statement

    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        with pytest.raises(RecordNotFound):
            await retry(conn, [ids[-1] + 1000])
        with pytest.raises(RecordNotRetriable, match="published already"):
            await retry(conn, [ids[0]])
        with pytest.raises(RecordNotRetriable, match="neither set aside nor failing"):
            await retry(conn, [ids[1], ids[4]])  # one cannot: none is retried
        assert await set_aside_count(pool) == 2

        assert [r.id for r in await retry(conn, [ids[3]])] == [ids[3]]  # hurried
        assert [r.id for r in await retry(conn, None)] == [ids[1], ids[2]]  # every set aside
        assert await retry(conn, None) == []

    assert await set_aside_count(pool) == 0
    leased = await rows.lease(10, 60)  # ids[4] is still leased from the first lease
    assert [(r.id, r.attempts) for r in leased] == [(i, 0) for i in ids[1:4]]


async def test_migration_0007_gives_old_dead_letters_the_new_key(pool: asyncpg.Pool) -> None:
    """A dead letter queued before 0007 (key dlq/<topic>/<partition>/<offset>, whole value) gets
    the key dead_letter_key gives the same record now: a redelivery is still de-duplicated."""
    records = [
        InputRecord("wallet-balance-changed", 3, 41, b"cust-1", b"{oops"),
        InputRecord("settings-updated", 0, 0, None, b"\x00\xff" * 50_000),
        InputRecord("settings-updated", 1, 9, b"", None),
    ]
    for r in records:
        await pool.execute(
            "INSERT INTO outbox (dedupe_key, topic, key, value, published_at)"
            " VALUES ($1, 'auto-topup-dead-letter', $2, $3, now())",
            f"dlq/{r.topic}/{r.partition}/{r.offset}",
            r.key,
            r.value,
        )
    await pool.execute("INSERT INTO outbox (dedupe_key, topic) VALUES ('event-x', 'x')")
    sql = files("service.adapters.postgres").joinpath("migrations/0007_outbox_set_aside.sql")
    (rewrite,) = re.findall(r"^UPDATE outbox SET dedupe_key.*?;$", sql.read_text(), re.M | re.S)

    await pool.execute(rewrite)

    keys = {r["dedupe_key"] for r in await pool.fetch("SELECT dedupe_key FROM outbox")}
    assert keys == {dead_letter_key(r) for r in records} | {"event-x"}
