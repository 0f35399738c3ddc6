"""Black-box helpers: publish to topics, read topics, wait for conditions (never sleep)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

# Waits for conditions. None of them is a client library's default: a request to the local
# broker is answered in milliseconds, but a broker that restarts or a slow machine may take
# far longer, and a test should then wait, not fail.
KAFKA_REQUEST_TIMEOUT_MS = 120_000  # one request to the broker (produce, fetch, metadata)
WAIT_SECONDS = 120.0  # until the service has published what a test waits for
STALL_SECONDS = 120.0  # reading a topic to its end: longest pause without a new record
POLL_MS = 200  # one fetch; a poll interval, not a deadline


async def partitions_of(bootstrap: str, names: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the named topics; a missing topic is an error."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    found: list[TopicPartition] = []
    for topic in described:
        if topic["error_code"] != 0 or not topic["partitions"]:
            raise LookupError(f"topic {topic['topic']} does not exist")
        found += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
    return found


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Creates those of the named topics that do not exist yet, `partitions` each (replication
    1), as the service's ensure_topics would, but with a test's request timeout."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return
        response = await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
    finally:
        await admin.close()
    # per topic (name, error code, ...): 0 created; 36 it exists (the topic list lags)
    failed = [e for e in response.topic_errors if e[1] not in (0, TopicAlreadyExistsError.errno)]
    if failed:
        raise RuntimeError(f"could not create topics: {failed}")


async def end_offsets(bootstrap: str, names: Sequence[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of the named topics, now."""
    partitions = await partitions_of(bootstrap, names)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


async def produce(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class TopicReader:
    """Reads every partition of some topics from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self.records: list[Record] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            group_id=None,
            request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
        )
        await self._consumer.start()
        try:
            partitions = await partitions_of(self._bootstrap, self._topics)
        except BaseException:
            await self._consumer.stop()
            raise
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def poll(self) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=POLL_MS)
        for records in batch.values():
            self.records += [
                Record(r.topic, r.partition, r.offset, r.key, r.value, dict(r.headers))
                for r in records
            ]

    async def wait_for(
        self,
        condition: Callable[[list[Record]], bool],
        timeout: float = WAIT_SECONDS,
        what: str = "condition",
    ) -> list[Record]:
        deadline = time.monotonic() + timeout
        while not condition(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; "
                    f"saw {len(self.records)} records"
                )
            await self.poll()
        return self.records

    async def drain(self) -> list[Record]:
        """Reads up to the current end of every partition. However many records that is, it
        goes on while the reading moves, and fails after STALL_SECONDS without progress."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        fewest, progress_at = None, time.monotonic()
        while True:
            positions = [await self._consumer.position(tp) for tp in ends]
            left = sum(max(end - p, 0) for p, end in zip(positions, ends.values(), strict=True))
            if left == 0:
                return self.records
            if fewest is None or left < fewest:
                fewest, progress_at = left, time.monotonic()
            elif time.monotonic() - progress_at > STALL_SECONDS:
                raise AssertionError(
                    f"reading made no progress for {STALL_SECONDS}s with {left} records "
                    f"left to read; read {len(self.records)}"
                )
            await self.poll()

    def on(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]
