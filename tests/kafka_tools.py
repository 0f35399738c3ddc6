"""Black-box helpers: publish to topics, read topics, wait for conditions (never sleep)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.adapters.kafka.topics import partitions_of


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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
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
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None
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
        batch = await self._consumer.getmany(timeout_ms=200)
        for records in batch.values():
            self.records += [
                Record(r.topic, r.partition, r.offset, r.key, r.value, dict(r.headers))
                for r in records
            ]

    async def wait_for(
        self,
        condition: Callable[[list[Record]], bool],
        timeout: float = 30.0,
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
        """Reads up to the current end of every partition."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        while True:
            positions = [await self._consumer.position(tp) for tp in ends]
            if all(p >= end for p, end in zip(positions, ends.values(), strict=True)):
                return self.records
            await self.poll()

    def on(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]
