"""The replay window's records, all partitions of both input topics merged by broker time."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka import ConsumerRecord, TopicPartition

from service.adapters.kafka.window import Window, tp_key
from service.service_layer.ports import InputRecord


class TimeMerge:
    """The window's records, all partitions of both topics merged by broker timestamp.

    A replay reads a backlog: left to the fetcher, one partition's thousands of records may come
    before another's, and settings could be applied after the balances that followed them. The
    merge gives out a record only once every partition that still has records in the window
    has one buffered (a partition that reached its stop offset holds nothing up), and the
    earliest of their heads goes first; each partition keeps its own order. Ties go by topic
    and partition. A partition with `high_water` records buffered is not fetched from until
    they are given out, which bounds the memory.
    """

    def __init__(self, window: Window, high_water: int) -> None:
        self._stop = window.stop
        self._start = window.start
        self._high_water = high_water
        self._order = sorted(window.start, key=tp_key)
        self._buffers: dict[TopicPartition, deque[ConsumerRecord]] = {
            tp: deque() for tp in self._order
        }
        self._fetched_to = dict(window.start)  # next offset to fetch, at most the stop offset
        self._given_to = dict(window.start)  # next offset not given out yet
        self._applied_to = dict(window.start)  # next offset not applied yet

    def _fetching(self, tp: TopicPartition) -> bool:
        return bool(self._fetched_to[tp] < self._stop[tp])

    def wanted(self) -> list[TopicPartition]:
        """The partitions to fetch from now."""
        return [
            tp
            for tp in self._order
            if self._fetching(tp) and len(self._buffers[tp]) < self._high_water
        ]

    def add(self, tp: TopicPartition, records: Iterable[ConsumerRecord], position: int) -> None:
        """What one fetch gave for `tp`, and the consumer's position after it."""
        stop = self._stop[tp]
        self._buffers[tp].extend(r for r in records if r.offset < stop)
        self._fetched_to[tp] = max(self._fetched_to[tp], min(position, stop))

    def take(self, limit: int) -> list[InputRecord]:
        """Up to `limit` records in time order; fewer (or none) while a partition that still
        has records in the window has none buffered."""
        taken: list[InputRecord] = []
        while len(taken) < limit:
            heads: list[tuple[int, int, TopicPartition]] = []
            for rank, tp in enumerate(self._order):
                buffer = self._buffers[tp]
                if buffer:
                    heads.append((buffer[0].timestamp, rank, tp))
                elif self._fetching(tp):
                    return taken  # its next record may be the earliest: wait for it
            if not heads:
                return taken
            tp = min(heads)[2]
            r = self._buffers[tp].popleft()
            self._given_to[tp] = r.offset + 1
            taken.append(
                InputRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
            )
        return taken

    def applied(self, records: Iterable[InputRecord]) -> None:
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            self._applied_to[tp] = max(self._applied_to[tp], r.offset + 1)

    def applied_to(self) -> dict[TopicPartition, int]:
        """Where each partition's applied records end: the offsets to commit.

        A partition whose every record in the window was applied is at its stop offset, even
        if the offsets before it hold no record (a gap is skipped by the fetcher)."""
        return {
            tp: self._stop[tp]
            if not self._fetching(tp) and not self._buffers[tp] and at == self._given_to[tp]
            else at
            for tp, at in self._applied_to.items()
        }

    def done_count(self) -> int:
        return sum(at - self._start[tp] for tp, at in self.applied_to().items())

    def done(self) -> bool:
        return all(
            not self._fetching(tp)
            and not self._buffers[tp]
            and self._applied_to[tp] == self._given_to[tp]
            for tp in self._order
        )
