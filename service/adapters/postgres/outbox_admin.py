"""Outbox records for operators: those set aside or failing, the gauge of those set aside, and
sending them again (`auto-topup outbox`). The SQL is in queries.sql."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from service.adapters.postgres.sql import q
from service.adapters.postgres.store import Connection

QUERY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class TroubledRecord:
    """An unpublished outbox record that Kafka refused for good (set aside), or whose last
    send failed and that waits for its retry."""

    id: int
    dedupe_key: str  # an output event's event_id; dlq/<topic>/<partition>/<offset>/<sha256>
    topic: str
    key: bytes | None
    value_bytes: int | None
    attempts: int
    last_error: str | None
    set_aside_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime

    @property
    def state(self) -> str:
        return "set_aside" if self.set_aside_at is not None else "retrying"


@dataclass(frozen=True, slots=True)
class Retried:
    id: int
    topic: str


class RecordNotFound(Exception):
    """No outbox record by that id."""


class RecordNotRetriable(Exception):
    """The record exists but is published already, or waits for nothing an operator can
    hurry (never failed)."""

    def __init__(self, record_id: int, why: str) -> None:
        super().__init__(f"outbox record {record_id} {why}")


async def troubled_records(conn: Connection, limit: int) -> list[TroubledRecord]:
    rows = await conn.fetch(q("outbox_troubles"), limit, timeout=QUERY_TIMEOUT_SECONDS)
    return [
        TroubledRecord(
            id=r["id"],
            dedupe_key=r["dedupe_key"],
            topic=r["topic"],
            key=r["key"],
            value_bytes=r["value_bytes"],
            attempts=r["attempts"],
            last_error=r["last_error"],
            set_aside_at=r["set_aside_at"],
            next_attempt_at=r["next_attempt_at"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def set_aside_count(pool: asyncpg.Pool) -> int:
    """The gauge auto_topup_outbox_set_aside (read at scrape time)."""
    return int(await pool.fetchval(q("outbox_set_aside_count"), timeout=2))


async def retry(conn: Connection, record_ids: Sequence[int] | None) -> list[Retried]:
    """Makes records due again at once, with a fresh backoff: the named ones (each must be
    unpublished, and set aside or waiting for a retry), or with None every record set aside.
    The running service's relay sends them within its poll interval. Raises RecordNotFound /
    RecordNotRetriable for a named record that cannot be retried (then nothing changes)."""
    t = QUERY_TIMEOUT_SECONDS
    ids = None if record_ids is None else list(dict.fromkeys(record_ids))
    async with conn.transaction():
        for record_id in ids or ():
            row = await conn.fetchrow(q("outbox_record_state"), record_id, timeout=t)
            if row is None:
                raise RecordNotFound(record_id)
            if row["published_at"] is not None:
                raise RecordNotRetriable(record_id, "is published already")
            if row["set_aside_at"] is None and row["attempts"] == 0:
                raise RecordNotRetriable(record_id, "is neither set aside nor failing")
        rows = await conn.fetch(q("retry_outbox"), ids, timeout=t)
    return [Retried(r["id"], r["topic"]) for r in rows]
