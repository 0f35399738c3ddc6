"""The outbox relay: publishes outbox rows, then marks each by its own result.

Rows are leased in a short transaction, published with no transaction open, and marked
afterwards. A crash between publishing and marking publishes the same records again (same event
ids, which consumers use to de-duplicate); nothing is ever lost.

Nothing on the way out blocks (contract v2). Each record is marked by its own result:
- published: done;
- refused for good (too large for the topic, an invalid topic, not authorized, a topic that is
  gone and cannot be created): set aside, with the error; the relay no longer sends it, the
  gauge auto_topup_outbox_set_aside counts it, and `auto-topup outbox retry` sends it again;
- anything else (broker away, leader not available, a timeout, a topic deleted and being
  re-created): tried again after a backoff that grows with its failed attempts.
A record whose batch the broker refused is sent again alone before it is set aside (the broker
refuses a whole batch for one record too large in it). A topic whose sends fail as if it were
gone is re-created when the relay may create topics (the service may: it creates missing
topics at start), else its records are set aside, reported.

The producer is not idempotent: aiokafka's idempotent producer never expires a batch (one
record for a deleted topic would hold the relay forever) and, after the broker refuses a batch,
every later one of that partition fails with OutOfOrderSequenceNumber. With acks=all and one
request in flight per partition, a retry after a lost answer can repeat a record, which
consumers de-duplicate on its event id, as after any relay crash.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnknownError,
    UnknownTopicOrPartitionError,
    UnsupportedForMessageFormatError,
)

from service.adapters.kafka.producer import REQUEST_TIMEOUT_MS, TopicRestorer
from service.service_layer.outbox_rows import LeasedRow, OutboxRows
from service.service_layer.worker import Background, Worker

log = logging.getLogger(__name__)

# A round fits in its lease (30 s) even when Kafka is away: a topic's metadata is awaited 5 s,
# a batch expires request_timeout_ms after it was queued (the producer is not idempotent) so
# every send is answered by then (SEND_SECONDS bounds it even if one is not), checking topics
# takes 5 s at most, and records of a refused batch are sent again one by one only in the first
# half of the lease (the rest: in a later round). A round that outlasts its lease anyway can see
# its records sent again by another relay: consumers de-duplicate on event ids.
SEND_SECONDS: Final = REQUEST_TIMEOUT_MS / 1000 + 5
METADATA_SECONDS: Final = 5.0
RESTORE_SECONDS: Final = 5.0
# Backoff of a record whose send failed transiently: 0.5 s, doubling with each failed attempt,
# at most a minute.
RETRY_FIRST_SECONDS: Final = 0.5
RETRY_MAX_SECONDS: Final = 60.0
ERROR_CHARS: Final = 1000

# Refused for good, whatever else is sent: the topic itself.
TOPIC_REFUSED: Final = (
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
# The broker refuses the whole batch: the records that shared it are sent again one at a time,
# and one that is refused alone is set aside. (UnknownError: a broker error aiokafka does not
# know, such as INVALID_RECORD; Kafka's own producer does not retry those either.)
BATCH_REFUSED: Final = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    UnknownError,
)
# Refused by the client before it is sent (no neighbour involved): too large, or a row that
# cannot be a Kafka record.
RECORD_REFUSED: Final = (MessageSizeTooLargeError, ValueError, TypeError, AssertionError)
# What sends to a topic that was deleted look like (or a broker that is away): the relay checks
# that the topic exists, and re-creates it.
TOPIC_GONE: Final = (
    UnknownTopicOrPartitionError,
    NotLeaderForPartitionError,
    LeaderNotAvailableError,
    KafkaTimeoutError,
)


def retry_delay(attempts: int) -> float:
    """Seconds before the next send of a record whose send failed `attempts` times so far."""
    doublings = min(max(attempts - 1, 0), 20)
    return min(RETRY_FIRST_SECONDS * float(1 << doublings), RETRY_MAX_SECONDS)


class Producer(Protocol):
    """What the relay uses of AIOKafkaProducer."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...

    async def partitions_for(self, topic: str) -> Any: ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class _Send:
    """One leased row on its way out, and what became of it."""

    row: LeasedRow
    headers: list[tuple[str, bytes]]
    error: BaseException | None = None
    alone: bool = False  # the error is this record's own (refused by the client, or alone)
    future: asyncio.Future[Any] | None = None


def describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return (f"{name}: {text}" if text and name not in text else text or name)[:ERROR_CHARS]


class OutboxRelay(Background):
    _unfinished = (
        "outbox relay did not drain within %.1fs; the rest is published after the next start"
    )

    def __init__(
        self,
        rows: OutboxRows,
        producer: Producer,
        *,
        restore_topics: TopicRestorer | None = None,
        batch_size: int = 1000,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        send_seconds: float = SEND_SECONDS,
    ) -> None:
        """`restore_topics`: see TopicRestorer; without it, a topic that seems gone is only
        retried."""
        self._rows = rows
        self._producer = producer
        self._restore = restore_topics
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._send_seconds = send_seconds
        self._worker = Worker(
            "outbox-relay", self.publish_once, poll_interval=poll_interval, drain=True
        )
        self.published = 0
        self.set_aside = 0

    async def close(self) -> None:
        await self._producer.stop()

    async def publish_once(self) -> int:
        """Leases one batch, publishes it and marks each record by its own result; returns how
        many records it settled (published or set aside)."""
        rows = await self._rows.lease(self._batch_size, self._lease_seconds)
        if not rows:
            return 0
        until = time.monotonic() + self._lease_seconds / 2
        sends = [_prepared(row) for row in sorted(rows, key=lambda r: r.id)]
        await self._send_all(sends)
        await self._one_by_one([s for s in sends if _batch_refused(s)], until)
        cannot = await self._restored([s for s in sends if isinstance(s.error, TOPIC_GONE)])
        published: list[int] = []
        refused: list[tuple[int, str]] = []
        failed: list[tuple[int, str, float]] = []
        for s in sends:
            if s.error is None:
                published.append(s.row.id)
            elif s.row.topic in cannot and isinstance(s.error, TOPIC_GONE):
                why = f"topic {s.row.topic} does not exist and cannot be created: "
                refused.append((s.row.id, (why + describe(s.error))[:ERROR_CHARS]))
            elif _for_good(s):
                refused.append((s.row.id, describe(s.error)))
            else:
                failed.append((s.row.id, describe(s.error), retry_delay(s.row.attempts + 1)))
        await self._rows.published(published)
        await self._rows.set_aside(refused)
        await self._rows.retry_later(failed)
        topic_of = {s.row.id: s.row.topic for s in sends}
        for row_id, why in refused:
            log.error(
                "outbox record %d for %s refused for good and set aside (`auto-topup outbox "
                "list`, then `outbox retry`): %s",
                row_id,
                topic_of[row_id],
                why,
            )
        if failed:
            log.warning(
                "outbox: %d records not published (first: %s), each tried again after a "
                "backoff (%.1fs at least)",
                len(failed),
                failed[0][1],
                min(delay for _, _, delay in failed),
            )
        self.published += len(published)
        self.set_aside += len(refused)
        return len(published) + len(refused)

    async def _send_all(self, sends: list[_Send]) -> None:
        """Sends every record that can be sent; records `error` or `future` on each."""
        topics = sorted({s.row.topic for s in sends if s.error is None})
        answers = await asyncio.gather(*map(self._metadata, topics))
        unknown: dict[str, BaseException | None] = dict(zip(topics, answers, strict=True))
        for s in sends:
            if s.error is not None:
                continue
            if (gone := unknown.get(s.row.topic)) is not None:
                s.error = gone  # no send: it would wait for the topic's metadata again
                continue
            try:
                s.future = await self._producer.send(
                    s.row.topic, value=s.row.value, key=s.row.key, headers=s.headers
                )
            except RECORD_REFUSED as exc:
                s.error, s.alone = exc, True
            except Exception as exc:  # a topic gone, a full buffer, ... (classified below)
                s.error = exc
                if isinstance(exc, (*TOPIC_GONE, *TOPIC_REFUSED)):
                    unknown[s.row.topic] = exc
        futures = [s.future for s in sends if s.future is not None]
        if futures:
            await asyncio.wait(futures, timeout=self._send_seconds)
        for s in sends:
            if s.future is not None:
                s.error = _outcome(s.future, self._send_seconds)
                s.future = None

    async def _metadata(self, topic: str) -> BaseException | None:
        """None when the producer knows the topic's partitions; else why not."""
        try:
            await asyncio.wait_for(self._producer.partitions_for(topic), METADATA_SECONDS)
        except TimeoutError:
            return _timeout(f"no metadata for topic {topic} in {METADATA_SECONDS:.0f}s")
        except Exception as exc:
            return exc
        return None

    async def _one_by_one(self, suspects: list[_Send], until: float) -> None:
        """Records of a batch the broker refused, sent again each alone in its batch: a record
        refused alone is refused for its own sake. Those left at `until` (time.monotonic())
        keep their batch's error, and are retried."""
        for s in suspects:
            if time.monotonic() > until:
                return
            s.error, s.alone = None, True
            try:
                future = await self._producer.send(
                    s.row.topic, value=s.row.value, key=s.row.key, headers=s.headers
                )
                await asyncio.wait({future}, timeout=self._send_seconds)
                s.error = _outcome(future, self._send_seconds)
            except Exception as exc:
                s.error = exc

    async def _restored(self, gone: list[_Send]) -> Collection[str]:
        """Topics whose sends failed as if they were gone: re-created (when allowed); returns
        those that do not exist and cannot be created."""
        topics = sorted({s.row.topic for s in gone})
        if not topics or self._restore is None:
            return ()
        try:
            return await asyncio.wait_for(self._restore(topics), RESTORE_SECONDS)
        except Exception as exc:  # the broker is away, most likely: the sends are retried
            log.warning("outbox: cannot check topics %s: %s", ", ".join(topics), describe(exc))
            return ()


def _prepared(row: LeasedRow) -> _Send:
    try:
        return _Send(row, _headers(row.headers))
    except (ValueError, TypeError) as exc:  # a row no Kafka record can be made of
        return _Send(row, [], ValueError(f"unreadable headers: {describe(exc)}"), alone=True)


def _outcome(future: asyncio.Future[Any], waited: float) -> BaseException | None:
    if not future.done():
        # Its batch expires before this: Kafka may still take it (then it is published twice).
        return _timeout(f"no answer from Kafka in {waited:.0f}s")
    if future.cancelled():
        return _timeout("the send was cancelled")
    return future.exception()


def _timeout(text: str) -> BaseException:
    error: BaseException = KafkaTimeoutError(text)
    return error


def _batch_refused(s: _Send) -> bool:
    return not s.alone and isinstance(s.error, BATCH_REFUSED)


def _for_good(s: _Send) -> bool:
    if isinstance(s.error, TOPIC_REFUSED):
        return True
    return s.alone and isinstance(s.error, (*RECORD_REFUSED, *BATCH_REFUSED))


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    pairs = json.loads(raw) if isinstance(raw, str) else raw
    return [(str(name), base64.b64decode(value, validate=True)) for name, value in pairs]
