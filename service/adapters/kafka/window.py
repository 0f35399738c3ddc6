"""The replay's reader of the input topics: where a time window starts and stops on each
partition, and a consumer that fetches only from the partitions it is asked for and commits a
replay group's progress."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from service.adapters.kafka.security import KafkaAccess, check_access
from service.adapters.kafka.topics import partitions_of

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 15000

Partition: TypeAlias = TopicPartition  # one partition of one topic


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def tp_key(tp: TopicPartition) -> tuple[str, int]:
    return (tp.topic, tp.partition)


@dataclass
class Window:
    """Where each partition starts and stops (stop excluded)."""

    start: dict[TopicPartition, int]
    stop: dict[TopicPartition, int]
    resumed: int = 0  # partitions that go on from the group's committed offset

    @property
    def total(self) -> int:
        return sum(self.stop[tp] - self.start[tp] for tp in self.start)


async def plan_window(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    since: datetime,
    until: datetime | None,
    resume: bool,
) -> Window:
    """Offsets by timestamp: a partition with no record at or after `since` starts at its end;
    without `until`, every partition stops at the end offset it has now."""
    ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
    found = await consumer.offsets_for_times({tp: _ms(since) for tp in partitions})
    start = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}
    stop = dict(ends)
    if until is not None:
        found = await consumer.offsets_for_times({tp: _ms(until) for tp in partitions})
        stop = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}
    start = {tp: min(start[tp], stop[tp]) for tp in partitions}
    window = Window(start, stop)
    if resume:  # a replay group that committed progress goes on from there
        consumer.assign(list(partitions))
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is not None and start[tp] < committed <= stop[tp]:
                window.start[tp] = committed
                window.resumed += 1
    return window


class WindowReader:
    """One consumer over the input topics; `group` None: no group, nothing committed."""

    def __init__(self, kafka: KafkaAccess, group: str | None) -> None:
        self._kafka = kafka
        self._consumer = AIOKafkaConsumer(
            **kafka.client_kwargs(),
            client_id="auto-topup-replay",
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a start offset already deleted: from the oldest kept
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        self._assigned: list[TopicPartition] = []

    @classmethod
    async def started(cls, kafka: KafkaAccess, group: str | None) -> WindowReader:
        await check_access(kafka)
        reader = cls(kafka, group)
        try:
            await reader._consumer.start()
        except BaseException:
            await reader._consumer.stop()
            raise
        return reader

    async def stop(self) -> None:
        await self._consumer.stop()

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        """Every partition of the topics (LookupError: one does not exist)."""
        return await partitions_of(self._kafka, topics)

    async def plan(
        self,
        partitions: Sequence[TopicPartition],
        since: datetime,
        until: datetime | None,
        resume: bool,
    ) -> Window:
        return await plan_window(self._consumer, partitions, since, until, resume)

    def begin(self, window: Window) -> list[TopicPartition]:
        """Assigns every partition of the window, at its start; returns them in order."""
        self._assigned = sorted(window.start, key=tp_key)
        self._consumer.assign(self._assigned)
        for tp in self._assigned:
            self._consumer.seek(tp, window.start[tp])
        return self._assigned

    async def fetch(
        self, wanted: Sequence[TopicPartition], max_records: int
    ) -> list[tuple[TopicPartition, list[ConsumerRecord], int]]:
        """One fetch from `wanted` only (the others paused): for each of them, what came and
        the position after it."""
        self._consumer.pause(*(tp for tp in self._assigned if tp not in wanted))
        self._consumer.resume(*wanted)
        if not wanted:
            return []
        fetched: dict[TopicPartition, list[ConsumerRecord]] = await self._consumer.getmany(
            *wanted, timeout_ms=200, max_records=max_records
        )
        return [(tp, fetched.get(tp, []), await self._consumer.position(tp)) for tp in wanted]

    async def commit(self, offsets: dict[TopicPartition, int], *, tries: int = 1) -> bool:
        """The group's progress; a failure is logged and retried (with a pause) `tries` times."""
        for attempt in range(tries):
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                log.warning("could not commit the replay's progress (%s)", exc)
                await asyncio.sleep(0.5 * (attempt + 1) if tries > 1 else 0)
                continue
            return True
        return False
