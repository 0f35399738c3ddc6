"""The wait for the other input topic, and who waits behind whom (ADR 0004).

Before it applies a record, an instance reads what the other topic's partition of the same
number holds up to that record's time, waiting at most a bound: Kafka Streams'
`max.task.idle.ms` for co-partitioned inputs (KIP-695). The order within a batch is
event_order.py's. `Alignment` is pure (the monotonic clock is injected). Only a record whose
application would trigger a top-up waits: applying any other record early cannot move money.
Its customer's later records wait behind it; other customers go on, except across a partner's
wallet: a top-up a partner pays waits behind the partner's waiting record dated at or before
it, and the partner's records dated after a waiting top-up it pays wait behind that top-up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from service.config import Settings
from service.contract.codec import Invalid
from service.service_layer.behind import Behind, Entry, Key
from service.service_layer.event_order import Decoded
from service.service_layer.ports import InputRecord

_K = TypeVar("_K")
_V = TypeVar("_V")
Monotonic = Callable[[], float]
_OVERDUE = 4  # bounds: see Alignment._overdue


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
    # retry_in 0: the customer whose record, waiting for the other topic, holds it back in the
    # end (its own, or one its customer's wallet pays or is paid by: behind.py).
    after: str | None = field(default=None, compare=False)


class Alignment:
    """What this instance has read of each input partition, and the records that wait.

    Reset on every assignment change. "Read up to time t" for partition p of one topic: this
    instance has fetched from partition p of the other topic a record with `occurred_at >= t`.
    A due record waits while the other partition is not read up to its time, at most `bound`
    seconds from when this instance first fetched it. Who waits behind whom: behind.py.
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
        self._behind = Behind()
        # (topic, partition, offset) -> when first fetched, for records not applied yet
        self._since: dict[Key, float] = {}

    def assign(self, partitions: Iterable[tuple[str, int]] | None) -> None:
        """A new assignment (None: unknown, as if every partition were this instance's): what
        was read and what waited is forgotten; the uncommitted records come again."""
        self._assigned = None if partitions is None else frozenset(partitions)
        self._epoch += 1
        for marks in self._marks.values():
            marks.clear()
        self._behind.clear()
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
        self,
        topic: str,
        partition: int,
        offset: int,
        customer_id: str,
        at: datetime,
        partner: str | None = None,
    ) -> float:
        """For a record whose application would trigger a top-up (paid by `partner`, if one
        pays): 0 when the other topic's partition is read up to its time (or its bound ran
        out), else the seconds left of its bound (it waits; nothing of it is applied)."""
        key = (topic, partition, offset)
        left = self._own_wait(topic, partition, offset, at)
        if left <= 0:
            self._behind.release(customer_id, key)
            return 0.0
        rank = self._rank.get(topic, 1)
        entry = Entry(topic, partition, offset, at, rank, customer_id, customer_id)
        self._behind.note(customer_id, entry, partner)
        return left

    def decide(
        self, record: InputRecord, customer_id: str, at: datetime, partner: str | None
    ) -> Held | None:
        """For a record whose application would trigger a top-up: None when it may be applied
        now; else held, for the other topic (`hold`), or behind a held record that its
        partner's balance depends on (behind.py)."""
        key = (record.topic, record.partition, record.offset)
        left = self.hold(*key, customer_id, at, partner)
        if left > 0:
            return Held(*key, customer_id, left, self.until(*key))
        if partner is None or partner == customer_id:
            return None
        rank = self._rank.get(record.topic, 1)
        entry = self._behind.before_top_up(customer_id, key, at, rank, partner)
        if entry is None or self._overdue(entry):
            return None
        return self._held_behind(key, customer_id, at, entry, partner)

    def _held_behind(
        self, key: Key, customer_id: str, at: datetime | None, entry: Entry, partner: str | None
    ) -> Held:
        """The record is held behind `entry`: noted, so that its customer's later records wait
        behind it; its own bound counts from its first fetch."""
        self._since.setdefault(key, self._clock())
        rank = self._rank.get(key[0], 1)
        mine = Entry(*key, entry.at if at is None else at, rank, entry.owner, customer_id, entry)
        self._behind.note(customer_id, mine, partner)
        return Held(*key, customer_id, 0.0, after=entry.owner)

    def _own_wait(self, topic: str, partition: int, offset: int, at: datetime) -> float:
        """The seconds left while the other topic's partition is not read up to `at`."""
        other = self._other.get(topic)
        if other is None or self._bound <= 0:
            return 0.0
        if self._assigned is not None and (other, partition) not in self._assigned:
            return 0.0  # not co-partitioned here (a rolling upgrade): nothing to wait for
        mark = self._marks[other].get(partition)
        if mark is not None and mark >= at:
            return 0.0
        now = self._clock()
        first = self._since.setdefault((topic, partition, offset), now)
        return self._bound - (now - first)

    def until(self, topic: str, partition: int, offset: int) -> float | None:
        """When the bound of a record that waits runs out (monotonic); None if it never
        waited."""
        first = self._since.get((topic, partition, offset))
        return None if first is None else first + self._bound

    def admit(
        self, topic: str, partition: int, offset: int, customer_id: str, at: datetime
    ) -> bool:
        """False when a record must not be applied yet: it waits behind a held record
        (behind.py). A held record itself is admitted, to be decided again."""
        record = InputRecord(topic, partition, offset, None, None)
        return self.held_back(record, customer_id, at) is None

    def held_back(
        self,
        record: InputRecord,
        customer_id: str,
        at: datetime | None,
        partner_of: Callable[[str], str | None] | None = None,
    ) -> Held | None:
        """None when the record may be applied (or decided) now, else held behind a held
        record (`partner_of`: who pays a customer's top-ups, asked only then). An unreadable
        record keyed by a customer (`at` None) waits behind any of its customer's, so that
        its dead letter never overtakes them."""
        if not self._behind.involves(customer_id):
            return None
        key = (record.topic, record.partition, record.offset)
        self._behind.release(customer_id, key)  # decided again now: it may be held again
        entry = self._behind.blocking(customer_id, key, at, self._rank.get(record.topic, 1))
        if entry is None or self._overdue(entry):
            return None
        partner = partner_of(customer_id) if partner_of is not None else None
        return self._held_behind(key, customer_id, at, entry, partner)

    def _overdue(self, entry: Entry) -> bool:
        """A held record that has waited four bounds is a leftover of a defect: nothing waits
        behind it any more (a partition must never stop)."""
        first = self._since.get(entry.key)
        return first is None or self._clock() - first >= _OVERDUE * self._bound

    def settled(self, topic: str, partition: int, offset: int) -> None:
        """A record was applied (or dead-lettered): it waits no more."""
        if self._since:
            self._since.pop((topic, partition, offset), None)

    def forget(self, topic: str, partition: int, offset: int) -> None:
        """A record was set aside (dead-lettered after it failed): nothing waits for it."""
        self.settled(topic, partition, offset)
        self._behind.forget((topic, partition, offset))

    @contextlib.contextmanager
    def trial(self, decoded: Iterable[Decoded]) -> Iterator[None]:
        """Undoes, on the way out, what is noted inside of these records, their partitions and
        their customers (and whom partners pay among them): for a trial of them that is rolled
        back. Nothing else is touched: another lane (ADR 0010), with other partitions and
        customers, may note its own meanwhile. After an assignment change inside, what the
        trial noted is forgotten."""
        marks: dict[tuple[str, int], datetime | None] = {}
        since: dict[Key, float | None] = {}
        customers: set[str] = set()
        for record, event in decoded:
            marks[(record.topic, record.partition)] = self.read_up_to(
                record.topic, record.partition
            )
            at = (record.topic, record.partition, record.offset)
            since[at] = self._since.get(at)
            if not isinstance(event, Invalid):
                customers.add(event.customer_id)
            elif record.key:  # held behind its key's customer (aligned.py)
                customers.add(record.key.decode("utf-8", "replace"))
        held = self._behind.snapshot(customers)
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
            self._behind.restore(customers, None if new else held)

    def waiting(self) -> dict[str, Key]:
        """customer -> (topic, partition, offset) of its earliest held record (tests, logs)."""
        entries = {c: self._behind.earliest(c) for c in self._behind.customers()}
        return {c: e.key for c, e in entries.items() if e is not None}


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
