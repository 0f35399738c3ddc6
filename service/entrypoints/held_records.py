"""Records the handler held back (see service_layer/alignment.py), kept by the consumer until
it applies them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from aiokafka import TopicPartition

from service.service_layer.alignment import Held
from service.service_layer.ports import InputRecord


class Pending:
    """Records that the handler did not apply (see alignment.py), kept until it does.

    A held record is handed in again only when it may be decided differently: its bound ran
    out, a batch brings a record of the other input topic for its partition number (which may
    show that topic read up to its time), or it waits behind a record of its customer that no
    longer waits. Then every kept record of that partition number goes in, ahead of the new
    records (a partition's order is kept). The others stay here without being decided again:
    with every batch, that would cost a transaction's work for nothing. Nothing is fetched
    again and no partition stops: the records after a held one are applied as they come (those
    of its customer are held too). A partition is committed only up to its first held record,
    so a restart or a rebalance redelivers it and what follows (applied again, that changes
    nothing). Everything is forgotten on an assignment change.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        aligned: tuple[str, str] | None = None,
    ) -> None:
        self._clock = clock  # the alignment's clock (Held.until)
        # The two input topics that wait for each other (None: any two topics)
        self._aligned = aligned
        self._held: dict[tuple[str, int], list[InputRecord]] = {}
        # (topic, partition, offset) -> why it was held, and when its bound runs out
        # (monotonic; None: it waits behind another record of its customer)
        self._why: dict[tuple[str, int, int], tuple[Held, float | None]] = {}
        # (topic, partition) -> the offset after the last record fetched from it
        self._next: dict[tuple[str, int], int] = {}
        self.retry_in: float | None = None  # when a kept record is to be decided again

    def __bool__(self) -> bool:
        return bool(self._held)

    def reset(self) -> None:
        self._held.clear()
        self._why.clear()
        self._next.clear()
        self.retry_in = None

    def records(self) -> list[InputRecord]:
        """Every kept record, in the order they were fetched (per partition)."""
        return [r for records in self._held.values() for r in records]

    def due(self, batch: Sequence[InputRecord] = ()) -> list[InputRecord]:
        """The kept records to decide again with `batch` (or alone, when `batch` is empty):
        those of the partition numbers where one may be decided differently now."""
        if not self._held:
            return []
        ready = self._ready_partitions(self._clock())
        topics_by_partition: dict[int, set[str]] = {}
        for topic, partition in self._held:
            topics_by_partition.setdefault(partition, set()).add(topic)
        aligned = self._aligned
        for topic, partition in {(r.topic, r.partition) for r in batch}:
            held_topics = topics_by_partition.get(partition)
            if held_topics is None or (aligned is not None and topic not in aligned):
                continue
            # a record of the other topic may show it read up to a held record's time
            if any(t != topic and (aligned is None or t in aligned) for t in held_topics):
                ready.add(partition)
        return [r for (_, p), records in self._held.items() if p in ready for r in records]

    def _ready_partitions(self, now: float) -> set[int]:
        waiting = {h.customer_id for h, deadline in self._why.values() if deadline is not None}
        return {
            h.partition
            for h, deadline in self._why.values()
            if (deadline is None and (h.after or h.customer_id) not in waiting)
            or (deadline is not None and deadline <= now)
        }

    def fetched(self, batch: Sequence[InputRecord]) -> None:
        """Notes how far each partition was fetched (a batch comes partition by partition)."""
        last: InputRecord | None = None
        for r in batch:
            if last is not None and (r.partition != last.partition or r.topic != last.topic):
                self._next[(last.topic, last.partition)] = last.offset + 1
            last = r
        if last is not None:
            self._next[(last.topic, last.partition)] = last.offset + 1

    def settle(
        self, given: Sequence[InputRecord], held: Sequence[Held]
    ) -> dict[TopicPartition, int] | None:
        """Keeps what the handler held of `given`, and the kept records it was not given.
        Returns the offsets to commit: each partition's first kept record, or how far it was
        fetched; None when nothing is kept (then the consumer's positions are right)."""
        if not held and not self._held:
            return None
        now = self._clock()
        handed = {(r.topic, r.partition, r.offset) for r in given}
        why = {(h.topic, h.partition, h.offset): h for h in held}
        kept: dict[tuple[str, int], list[InputRecord]] = {}
        for tp, records in self._held.items():
            left = [r for r in records if (r.topic, r.partition, r.offset) not in handed]
            if left:
                kept[tp] = left
        for r in given:
            h = why.get((r.topic, r.partition, r.offset))
            if h is not None:
                kept.setdefault((r.topic, r.partition), []).append(r)
                self._why[(r.topic, r.partition, r.offset)] = (h, _deadline(h, now))
        for records in kept.values():
            records.sort(key=lambda r: r.offset)
        self._held = kept
        live = {(r.topic, r.partition, r.offset) for records in kept.values() for r in records}
        self._why = {k: v for k, v in self._why.items() if k in live}
        self.retry_in = self._next_retry(now)
        return {
            TopicPartition(topic, partition): kept[(topic, partition)][0].offset
            if (topic, partition) in kept
            else offset
            for (topic, partition), offset in self._next.items()
        }

    def recount(self) -> None:
        """Sets `retry_in` again from now (nothing was decided since the last settle)."""
        self.retry_in = self._next_retry(self._clock())

    def _next_retry(self, now: float) -> float | None:
        """Seconds until a kept record is to be decided again (0: at once); None: none kept."""
        if not self._why:
            return None
        if self._ready_partitions(now):
            return 0.0
        deadlines = [d for _, d in self._why.values() if d is not None]
        return max(0.0, min(deadlines) - now) if deadlines else 0.0


def _deadline(held: Held, now: float) -> float | None:
    """When a held record's bound runs out: as the alignment counted it, else from now."""
    if held.retry_in <= 0:
        return None
    return held.until if held.until is not None else now + held.retry_in
