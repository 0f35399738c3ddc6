"""Records the handler held back (see service_layer/alignment.py), kept by the consumer until
it applies them."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import ConsumerRecord, TopicPartition

from service.service_layer.alignment import Held
from service.service_layer.ports import InputRecord


class Pending:
    """Records that the handler did not apply (see alignment.py), kept until it does.

    They are handed in again with every batch, ahead of the new records (a partition's order is
    kept), and once more when the bound of a waiting one runs out. Nothing is fetched again and
    no partition stops: the records after a held one are applied as they come (those of its
    customer are held too). A partition is committed only up to its first held record, so a
    restart or a rebalance redelivers it and what follows (applied again, that changes
    nothing). Everything is forgotten on an assignment change.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], list[InputRecord]] = {}
        # (topic, partition) -> the offset after the last record fetched from it
        self._next: dict[tuple[str, int], int] = {}
        self.retry_in: float | None = None  # when a waiting record's bound runs out

    def __bool__(self) -> bool:
        return bool(self._held)

    def reset(self) -> None:
        self._held.clear()
        self._next.clear()
        self.retry_in = None

    def records(self) -> list[InputRecord]:
        return [r for records in self._held.values() for r in records]

    def fetched(self, batch: Sequence[ConsumerRecord]) -> None:
        """Notes how far each partition was fetched (a batch comes partition by partition)."""
        last: ConsumerRecord | None = None
        for r in batch:
            if last is not None and (r.partition != last.partition or r.topic != last.topic):
                self._next[(last.topic, last.partition)] = last.offset + 1
            last = r
        if last is not None:
            self._next[(last.topic, last.partition)] = last.offset + 1

    def settle(
        self, given: Sequence[InputRecord], held: Sequence[Held]
    ) -> dict[TopicPartition, int] | None:
        """Keeps what the handler held of `given`. Returns the offsets to commit: each
        partition's first held record, or how far it was fetched; None when nothing is held
        (then the consumer's positions are right)."""
        if not held and not self._held:
            return None
        wanted = {(h.topic, h.partition, h.offset) for h in held}
        keys = {(h.topic, h.partition) for h in held}
        kept: dict[tuple[str, int], list[InputRecord]] = {}
        for r in given:
            if (r.topic, r.partition) in keys and (r.topic, r.partition, r.offset) in wanted:
                kept.setdefault((r.topic, r.partition), []).append(r)
        self._held = kept
        # Records held only behind another (no bound of their own) whose customer no longer
        # waits are decided again at once, not at the next fetch.
        self.retry_in = min(
            (h.retry_in for h in held if h.retry_in > 0), default=0.0 if held else None
        )
        return {
            TopicPartition(topic, partition): kept[(topic, partition)][0].offset
            if (topic, partition) in kept
            else offset
            for (topic, partition), offset in self._next.items()
        }
