"""Event-time order of one customer's settings and balances, and the wait for the other topic.

The contract (v2, "Order of one customer's events"): one instance owns the same partition
numbers of both input topics, applies one customer's settings and balances in event-time order
(`occurred_at`; at the same instant, settings first), and before it applies a record it reads
what the other topic's partition holds up to that record's time, waiting at most a bound. This
is what Kafka Streams does for co-partitioned inputs: its PartitionGroup takes the record with
the lowest timestamp among the partitions' heads, and `max.task.idle.ms` bounds how long a
task idles for a partition that has nothing buffered (KIP-695).

Two pure pieces (no I/O; the monotonic clock is injected):

- `in_event_time`: the order in which one batch is applied. Each customer's records of the two
  topics are merged by taking the earlier head, settings first at the same instant. Each topic
  keeps the order its partition delivered (as PartitionGroup does), so the staleness rules
  (`sequence`, `version`, `(occurred_at, event_id)`) see a topic's records as before: a balance
  that arrives after a newer one of the same wallet is still stale.
- `Alignment`: how far this instance has read each input partition (the greatest `occurred_at`
  fetched from it), and which records must wait. Only a record whose application would trigger
  a top-up waits (the rules decide, as always): applying any other record early cannot move
  money. While a record of a customer waits, that customer's later records wait behind it;
  other customers go on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from service.config import Settings
from service.contract.codec import Invalid
from service.domain.model import BalanceChanged, InvoiceStatusChanged, SettingsUpdated
from service.service_layer.ports import InputRecord

_K = TypeVar("_K")
_V = TypeVar("_V")
Decoded = tuple[InputRecord, BalanceChanged | SettingsUpdated | InvoiceStatusChanged | Invalid]
Monotonic = Callable[[], float]


def in_event_time(decoded: Sequence[Decoded], settings_topic: str) -> Sequence[Decoded]:
    """The batch in the order to apply it: each customer's settings are placed among that
    customer's balances by `occurred_at` (a settings record goes before a balance of the same
    instant); everything else keeps its place. Without settings in the batch (the usual case),
    the batch itself."""
    queues = _settings_queues(decoded, settings_topic)
    if not queues:
        return decoded
    taken = dict.fromkeys(queues, 0)
    out: list[Decoded] = []
    for pair in decoded:
        record, event = pair
        if isinstance(event, Invalid):
            out.append(pair)
            continue
        if record.topic == settings_topic:
            continue  # placed from its customer's queue
        queue = queues.get(event.customer_id)
        if queue is not None:
            i = taken[event.customer_id]
            while i < len(queue) and queue[i][0] <= event.occurred_at:
                out.append(queue[i][1])
                i += 1
            taken[event.customer_id] = i
        out.append(pair)
    for customer_id, queue in queues.items():
        out += [pair for _, pair in queue[taken[customer_id] :]]
    return out


def apply_order(decoded: Sequence[Decoded], settings_topic: str) -> list[int]:
    """The indexes of `decoded` in the order `in_event_time` applies them."""
    where = {id(pair): i for i, pair in enumerate(decoded)}
    return [where[id(pair)] for pair in in_event_time(decoded, settings_topic)]


def _settings_queues(
    decoded: Sequence[Decoded], settings_topic: str
) -> dict[str, list[tuple[datetime, Decoded]]]:
    """Each customer's decoded settings records, in batch order, with their `occurred_at`."""
    queues: dict[str, list[tuple[datetime, Decoded]]] = {}
    for pair in decoded:
        event = pair[1]
        if pair[0].topic == settings_topic and not isinstance(event, Invalid):
            queues.setdefault(event.customer_id, []).append((event.occurred_at, pair))
    return queues


@dataclass(frozen=True, slots=True)
class Held:
    """A record that was not applied. The consumer keeps it and gives it to the handler again;
    nothing at or after its offset may be committed for its partition."""

    topic: str
    partition: int
    offset: int
    customer_id: str
    # > 0: it waits for the other input topic; its bound runs out in this many seconds (it is
    # decided again then, or with any batch before: one may read the other topic far enough).
    # 0: it waits behind a waiting record of its customer, and is decided again with it.
    retry_in: float
    # When its bound runs out, on the alignment's monotonic clock (retry_in > 0 only).
    until: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class _Waiting:
    topic: str
    partition: int
    offset: int
    at: datetime
    rank: int


class Alignment:
    """What this instance has read of each input partition, and the records that wait.

    Reset on every assignment change. "Read up to time t" for partition p of one topic: this
    instance has fetched from partition p of the other topic a record with `occurred_at >= t`.
    A due record waits while the other partition is not read up to its time, at most `bound`
    seconds from when this instance first fetched it.
    """

    def __init__(
        self,
        balances: str,
        settings: str,
        bound_seconds: float,
        clock: Monotonic,
    ) -> None:
        self._other = {balances: settings, settings: balances}
        self._rank = {settings: 0, balances: 1}  # settings first at the same instant
        self._bound = bound_seconds
        self._clock = clock
        self._marks: dict[str, dict[int, datetime]] = {balances: {}, settings: {}}
        self._assigned: frozenset[tuple[str, int]] | None = None
        self._epoch = 0  # assignments so far
        # customer -> its record that waits (at most one: later ones wait behind it)
        self._waiting: dict[str, _Waiting] = {}
        # (topic, partition, offset) -> when first fetched, for records not applied yet
        self._since: dict[tuple[str, int, int], float] = {}

    def assign(self, partitions: Iterable[tuple[str, int]] | None) -> None:
        """A new assignment (None: unknown, as if every partition were this instance's): what
        was read and what waited is forgotten; the uncommitted records come again."""
        self._assigned = None if partitions is None else frozenset(partitions)
        self._epoch += 1
        for marks in self._marks.values():
            marks.clear()
        self._waiting.clear()
        self._since.clear()

    def fetched(self, decoded: Iterable[Decoded], horizon: datetime, now: datetime) -> None:
        """Records fetched by this instance at `now`. Those dated after `horizon` (further
        ahead than the allowed skew: they are dead-lettered) do not count; one dated ahead of
        `now` shows the partition read up to `now` only (a producer's clock that runs ahead
        must not let a record of another customer skip the wait)."""
        all_marks = self._marks
        for record, event in decoded:
            if isinstance(event, Invalid):
                continue
            at = event.occurred_at
            if at > horizon:
                continue
            if at > now:
                at = now
            marks = all_marks.get(record.topic)
            if marks is None:
                continue
            mark = marks.get(record.partition)
            if mark is None or at > mark:
                marks[record.partition] = at

    def read_up_to(self, topic: str, partition: int) -> datetime | None:
        """The greatest `occurred_at` fetched from this partition since the assignment."""
        marks = self._marks.get(topic)
        return None if marks is None else marks.get(partition)

    def hold(
        self, topic: str, partition: int, offset: int, customer_id: str, at: datetime
    ) -> float:
        """For a record whose application would trigger a top-up: 0 when it may be applied now,
        else the seconds left of its bound (it waits; nothing of it is applied)."""
        other = self._other.get(topic)
        if other is None or self._bound <= 0:
            return 0.0
        if self._assigned is not None and (other, partition) not in self._assigned:
            return 0.0  # not co-partitioned here (a rolling upgrade): nothing to wait for
        mark = self._marks[other].get(partition)
        if mark is not None and mark >= at:
            return self._go(topic, partition, offset, customer_id)
        now = self._clock()
        first = self._since.setdefault((topic, partition, offset), now)
        left = self._bound - (now - first)
        if left <= 0:
            return self._go(topic, partition, offset, customer_id)
        waiting = self._waiting.get(customer_id)
        if waiting is None or (at, self._rank[topic]) < (waiting.at, waiting.rank):
            self._waiting[customer_id] = _Waiting(topic, partition, offset, at, self._rank[topic])
        return left

    def until(self, topic: str, partition: int, offset: int) -> float | None:
        """When the bound of a record that waits runs out (monotonic); None if it never
        waited."""
        first = self._since.get((topic, partition, offset))
        return None if first is None else first + self._bound

    def _go(self, topic: str, partition: int, offset: int, customer_id: str) -> float:
        """It may be applied now: if it was its customer's waiting record, no longer."""
        waiting = self._waiting.get(customer_id)
        if waiting is not None and (waiting.topic, waiting.partition, waiting.offset) == (
            topic,
            partition,
            offset,
        ):
            del self._waiting[customer_id]
        return 0.0

    def admit(
        self, topic: str, partition: int, offset: int, customer_id: str, at: datetime
    ) -> bool:
        """False when a record must not be applied yet because an earlier record of its
        customer waits (it is decided again after that one). The waiting record itself is
        admitted, to be decided again."""
        if not self._waiting:
            return True
        waiting = self._waiting.get(customer_id)
        if waiting is None:
            return True
        if waiting.topic == topic and waiting.partition == partition:
            if offset == waiting.offset:
                del self._waiting[customer_id]  # decided again now: it may wait again
                return True
            later = offset > waiting.offset
        else:
            later = (at, self._rank.get(topic, 1)) > (waiting.at, waiting.rank)
        if later:
            self._since.setdefault((topic, partition, offset), self._clock())
        return not later

    def waits_for(self, customer_id: str) -> bool:
        """Whether a record of this customer waits (an unreadable record keyed by the customer
        then waits behind it too, so that its dead letter never overtakes it)."""
        return customer_id in self._waiting

    def settled(self, topic: str, partition: int, offset: int) -> None:
        """A record was applied (or dead-lettered): it waits no more."""
        if self._since:
            self._since.pop((topic, partition, offset), None)

    def forget(self, topic: str, partition: int, offset: int) -> None:
        """A record was set aside (dead-lettered after it failed): nothing waits for it."""
        self.settled(topic, partition, offset)
        for customer_id, w in list(self._waiting.items()):
            if (w.topic, w.partition, w.offset) == (topic, partition, offset):
                del self._waiting[customer_id]

    @contextlib.contextmanager
    def trial(self, decoded: Iterable[Decoded]) -> Iterator[None]:
        """Undoes, on the way out, what is noted inside of these records, their partitions and
        their customers: for a trial of them that is rolled back. Nothing else is touched:
        another lane (ADR 0010), with other partitions and customers, may note its own
        meanwhile. After an assignment change inside, what the trial noted is forgotten."""
        marks: dict[tuple[str, int], datetime | None] = {}
        since: dict[tuple[str, int, int], float | None] = {}
        waiting: dict[str, _Waiting | None] = {}
        for record, event in decoded:
            marks[(record.topic, record.partition)] = self.read_up_to(
                record.topic, record.partition
            )
            at = (record.topic, record.partition, record.offset)
            since[at] = self._since.get(at)
            if not isinstance(event, Invalid):
                waiting[event.customer_id] = self._waiting.get(event.customer_id)
        epoch = self._epoch
        try:
            yield
        finally:
            new = self._epoch != epoch  # then nothing of these was noted before the trial
            for (topic, partition), mark in marks.items():
                if topic in self._marks:
                    _put(self._marks[topic], partition, None if new else mark)
            for key, first in since.items():
                _put(self._since, key, None if new else first)
            for customer_id, w in waiting.items():
                _put(self._waiting, customer_id, None if new else w)

    def waiting(self) -> dict[str, tuple[str, int, int]]:
        """customer -> (topic, partition, offset) of its record that waits (for tests, logs)."""
        return {c: (w.topic, w.partition, w.offset) for c, w in self._waiting.items()}


def _put(table: dict[_K, _V], key: _K, value: _V | None) -> None:
    """`table[key] = value`, or no `key` for None."""
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def configured_alignment(settings: Settings) -> Alignment | None:
    """Due records wait for the other input topic (contract v2); 0 ms: they never wait."""
    if settings.input_align_ms <= 0:
        return None
    return Alignment(
        settings.topics.wallet_balance_changed,
        settings.topics.settings_updated,
        settings.input_align_ms / 1000,
        time.monotonic,
    )
