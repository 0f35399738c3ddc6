"""The outbox relay marks each record by its own result, with fakes of the producer and the
outbox table (fakes over mocks).

The fake producer behaves as aiokafka with a broker does where it matters here: the records sent
before the relay waits form one batch per topic, and the broker refuses a whole batch when one
record in it is over the topic's limit; the client refuses a record over its request limit in
send() itself. Time is a fake clock that moves only when a test says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from service.adapters.kafka.relay import (
    RETRY_FIRST_SECONDS,
    RETRY_MAX_SECONDS,
    OutboxRelay,
    retry_delay,
)
from service.service_layer.outbox_rows import LeasedRow

INVOICES, CREDITS, DEAD = "invoice-requested", "credit-issued", "dead-letter"


@dataclass
class Row:
    id: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Any
    attempts: int = 0
    published: int = 0  # times marked published
    set_aside: bool = False
    last_error: str | None = None
    due_at: float = 0.0


@dataclass
class MemoryOutbox:
    """The outbox table of the relay's side, in memory; `now` is the fake clock."""

    rows: dict[int, Row] = field(default_factory=dict)
    now: float = 0.0
    leases: int = 0

    def add(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = b"cust",
        headers: Any = "[]",
    ) -> int:
        row_id = len(self.rows) + 1
        self.rows[row_id] = Row(row_id, topic, key, value, headers)
        return row_id

    async def lease(self, limit: int, seconds: float) -> list[LeasedRow]:
        self.leases += 1
        due = [
            r
            for r in self.rows.values()
            if not r.published and not r.set_aside and r.due_at <= self.now
        ]
        return [
            LeasedRow(r.id, r.topic, r.key, r.value, r.headers, r.attempts)
            for r in sorted(due, key=lambda r: r.id)[:limit]
        ]

    async def published(self, ids: Sequence[int]) -> None:
        for i in ids:
            self.rows[i].published += 1

    async def retry_later(self, failed: Sequence[tuple[int, str, float]]) -> None:
        for i, error, delay in failed:
            row = self.rows[i]
            row.attempts += 1
            row.last_error = error
            row.due_at = self.now + delay

    async def set_aside(self, refused: Sequence[tuple[int, str]]) -> None:
        for i, error in refused:
            row = self.rows[i]
            row.attempts += 1
            row.last_error = error
            row.set_aside = True

    def state(self, row_id: int) -> str:
        row = self.rows[row_id]
        if row.published:
            return "published"
        return "set_aside" if row.set_aside else "retrying"


@dataclass
class FakeProducer:
    client_limit: int = 1_000_000  # max_request_size: refused in send()
    topic_limit: dict[str, int] = field(default_factory=dict)  # max.message.bytes
    missing: set[str] = field(default_factory=set)  # no metadata: partitions_for fails
    unauthorized: set[str] = field(default_factory=set)
    away: bool = False  # every batch fails as with a broker away
    silent: bool = False  # no answer at all
    sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )
    batches: list[int] = field(default_factory=list)  # size of each batch sent
    _batch: list[tuple[str, bytes | None, bytes | None, Any, asyncio.Future[Any]]] = field(
        default_factory=list
    )

    async def partitions_for(self, topic: str) -> set[int]:
        if topic in self.missing:
            raise UnknownTopicOrPartitionError()
        return {0}

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        size = len(value or b"") + len(key or b"") + sum(len(v) for _, v in headers or [])
        if size > self.client_limit:
            raise MessageSizeTooLargeError("The message is too large (client)")
        if topic in self.missing:
            raise UnknownTopicOrPartitionError()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self._batch.append((topic, key, value, headers or [], future))
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if self.silent:
            return
        for topic in dict.fromkeys(t for t, *_ in batch):
            records = [b for b in batch if b[0] == topic]
            self.batches.append(len(records))
            limit = self.topic_limit.get(topic)
            error: Exception | None = None
            if self.away:
                error = NotLeaderForPartitionError()
            elif topic in self.unauthorized:
                error = TopicAuthorizationFailedError(topic)
            elif limit is not None and any(len(r[2] or b"") > limit for r in records):
                error = MessageSizeTooLargeError()  # the broker refuses the whole batch
            for t, key, value, headers, future in records:
                if error is not None:
                    future.set_exception(error)
                else:
                    self.sent.append((t, key, value, headers))
                    future.set_result(("metadata", t))

    async def stop(self) -> None:
        return None

    def values(self, topic: str) -> list[bytes | None]:
        return [v for t, _, v, _ in self.sent if t == topic]


@dataclass
class FakeTopics:
    """The restorer: re-creates what `producer.missing` lacks, unless it may not."""

    producer: FakeProducer
    may_create: bool = True
    calls: list[list[str]] = field(default_factory=list)

    async def __call__(self, names: Collection[str]) -> Collection[str]:
        self.calls.append(sorted(names))
        gone = [n for n in names if n in self.producer.missing]
        if self.may_create:
            self.producer.missing -= set(gone)
            return []
        return gone


def relay(
    outbox: MemoryOutbox, producer: FakeProducer, topics: FakeTopics | None = None
) -> OutboxRelay:
    return OutboxRelay(outbox, producer, restore_topics=topics, send_seconds=0.2)


async def test_every_record_is_published_once_and_marked() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer()
    ids = [outbox.add(INVOICES, f"v{i}".encode()) for i in range(5)]
    headers = json.dumps([["ce_id", base64.b64encode(b"e-1").decode()]])
    ids.append(outbox.add(CREDITS, b"credit", headers=headers))
    r = relay(outbox, producer)

    assert await r.publish_once() == 6
    assert await r.publish_once() == 0

    assert [outbox.rows[i].published for i in ids] == [1] * 6
    assert producer.values(INVOICES) == [f"v{i}".encode() for i in range(5)]
    assert producer.sent[-1] == (CREDITS, b"cust", b"credit", [("ce_id", b"e-1")])
    assert r.published == 6


async def test_a_record_the_client_refuses_is_set_aside_and_the_others_go_out() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(client_limit=1000)
    before = [outbox.add(INVOICES, b"a"), outbox.add(CREDITS, b"b")]
    big = outbox.add(DEAD, b"x" * 5000)
    after = [outbox.add(INVOICES, b"c"), outbox.add(CREDITS, b"d")]
    r = relay(outbox, producer)

    assert await r.publish_once() == 5

    assert outbox.state(big) == "set_aside"
    assert "MessageSizeTooLargeError" in (outbox.rows[big].last_error or "")
    assert all(outbox.rows[i].published == 1 for i in before + after)
    assert len(producer.sent) == 4
    # Set aside: never leased again (no more sends), until an operator retries it.
    assert await r.publish_once() == 0
    assert len(producer.sent) == 4
    assert r.set_aside == 1


async def test_a_batch_the_broker_refuses_is_sent_again_record_by_record() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(topic_limit={DEAD: 1000})
    small = [outbox.add(DEAD, f"small {i}".encode()) for i in range(3)]
    big = outbox.add(DEAD, b"x" * 5000)
    small.append(outbox.add(DEAD, b"small 4"))
    other = outbox.add(INVOICES, b"invoice")
    r = relay(outbox, producer)

    assert await r.publish_once() == 6

    assert outbox.state(big) == "set_aside"
    assert all(outbox.state(i) == "published" for i in [*small, other])
    # The first batch of the dead-letter topic was refused whole; then each record alone.
    assert producer.batches[0] == 5
    assert sorted(v or b"" for v in producer.values(DEAD)) == sorted(
        outbox.rows[i].value or b"" for i in small
    )
    assert producer.values(INVOICES) == [b"invoice"]


async def test_what_a_round_has_no_time_to_send_alone_is_retried_not_set_aside() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(topic_limit={DEAD: 1000})
    small, big = outbox.add(DEAD, b"small"), outbox.add(DEAD, b"x" * 5000)
    # A lease of 0 s: no time left after the first sends for sending records alone.
    r = OutboxRelay(outbox, producer, lease_seconds=0.0, send_seconds=0.2)

    assert await r.publish_once() == 0

    assert (outbox.state(small), outbox.state(big)) == ("retrying", "retrying")
    outbox.now = RETRY_FIRST_SECONDS
    assert await relay(outbox, producer).publish_once() == 2
    assert (outbox.state(small), outbox.state(big)) == ("published", "set_aside")


async def test_transient_failures_are_retried_with_a_growing_backoff() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(away=True)
    ids = [outbox.add(INVOICES, b"a"), outbox.add(CREDITS, b"b")]
    r = relay(outbox, producer)

    assert await r.publish_once() == 0
    assert all(outbox.state(i) == "retrying" for i in ids)
    assert outbox.rows[ids[0]].due_at == RETRY_FIRST_SECONDS
    assert "NotLeaderForPartitionError" in (outbox.rows[ids[0]].last_error or "")
    # Not due yet: not leased, not sent.
    assert await r.publish_once() == 0
    outbox.now = RETRY_FIRST_SECONDS
    assert await r.publish_once() == 0  # still away: a second failed attempt, a longer wait
    assert outbox.rows[ids[0]].attempts == 2
    assert outbox.rows[ids[0]].due_at == outbox.now + 2 * RETRY_FIRST_SECONDS

    producer.away = False
    outbox.now += 2 * RETRY_FIRST_SECONDS
    assert await r.publish_once() == 2
    assert all(outbox.rows[i].published == 1 for i in ids)
    assert not any(row.set_aside for row in outbox.rows.values())


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [RETRY_FIRST_SECONDS * k for k in (1, 2, 4, 8)]
    assert retry_delay(1000) == RETRY_MAX_SECONDS


async def test_an_unanswered_send_is_retried_not_waited_for_forever() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(silent=True)
    row = outbox.add(INVOICES, b"a")
    r = relay(outbox, producer)

    assert await asyncio.wait_for(r.publish_once(), 5) == 0

    assert outbox.state(row) == "retrying"
    assert "KafkaTimeoutError" in (outbox.rows[row].last_error or "")


async def test_a_deleted_topic_is_recreated_and_its_records_go_out() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(missing={INVOICES})
    topics = FakeTopics(producer)
    invoices = [outbox.add(INVOICES, b"a"), outbox.add(INVOICES, b"b")]
    credit = outbox.add(CREDITS, b"c")
    r = relay(outbox, producer, topics)

    assert await r.publish_once() == 1

    assert topics.calls == [[INVOICES]]
    assert outbox.state(credit) == "published"
    assert all(outbox.state(i) == "retrying" for i in invoices)
    outbox.now = RETRY_FIRST_SECONDS
    assert await r.publish_once() == 2
    assert all(outbox.rows[i].published == 1 for i in invoices)
    assert producer.values(INVOICES) == [b"a", b"b"]


async def test_a_topic_that_cannot_be_created_is_reported_by_setting_its_records_aside() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(missing={INVOICES})
    topics = FakeTopics(producer, may_create=False)
    invoice = outbox.add(INVOICES, b"a")
    credit = outbox.add(CREDITS, b"c")
    r = relay(outbox, producer, topics)

    assert await r.publish_once() == 2

    assert outbox.state(invoice) == "set_aside"
    assert "does not exist and cannot be created" in (outbox.rows[invoice].last_error or "")
    assert outbox.state(credit) == "published"


async def test_without_a_restorer_a_missing_topic_is_only_retried() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(missing={INVOICES})
    invoice = outbox.add(INVOICES, b"a")
    r = relay(outbox, producer)

    assert await r.publish_once() == 0

    assert outbox.state(invoice) == "retrying"


async def test_a_topic_not_authorized_sets_its_records_aside() -> None:
    outbox, producer = MemoryOutbox(), FakeProducer(unauthorized={CREDITS})
    credits = [outbox.add(CREDITS, b"a"), outbox.add(CREDITS, b"b")]
    invoice = outbox.add(INVOICES, b"c")
    r = relay(outbox, producer)

    assert await r.publish_once() == 3

    assert all(outbox.state(i) == "set_aside" for i in credits)
    assert "TopicAuthorizationFailedError" in (outbox.rows[credits[0]].last_error or "")
    assert outbox.state(invoice) == "published"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param("not json", id="not-json"),
        pytest.param('[["name", "not base64!"]]', id="not-base64"),
        pytest.param('[["name"]]', id="not-a-pair"),
    ],
)
async def test_a_row_no_record_can_be_made_of_is_set_aside(headers: str) -> None:
    outbox, producer = MemoryOutbox(), FakeProducer()
    broken = outbox.add(INVOICES, b"a", headers=headers)
    fine = outbox.add(INVOICES, b"b")
    r = relay(outbox, producer)

    assert await r.publish_once() == 2

    assert outbox.state(broken) == "set_aside"
    assert "unreadable headers" in (outbox.rows[broken].last_error or "")
    assert producer.values(INVOICES) == [b"b"]
    assert outbox.state(fine) == "published"


async def test_a_send_that_times_out_in_the_client_is_retried() -> None:
    class FullBuffer(FakeProducer):
        async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            raise KafkaTimeoutError("buffer full")

    outbox, producer = MemoryOutbox(), FullBuffer()
    row = outbox.add(INVOICES, b"a")
    r = relay(outbox, producer)

    assert await r.publish_once() == 0

    assert outbox.state(row) == "retrying"
