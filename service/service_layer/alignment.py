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
from service.service_layer.event_order import Decoded
from service.service_layer.ports import InputRecord

_K = TypeVar("_K")
_V = TypeVar("_V")
Monotonic = Callable[[], float]


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
    # retry_in 0: the customer whose waiting record it is behind, when not its own (a due
    # top-up's record, that its wallet pays for: see Alignment).
    after: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class _Waiting:
    topic: str
    partition: int
    offset: int
    at: datetime
    rank: int
    # whose waiting record holds it back: its customer, or the customer whose waiting top-up
    # its customer pays for (Held.after; the records after it wait until that one is decided)
    owner: str

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


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
        # partner -> the customers whose waiting top-up it pays (its later records wait too)
        self._pays: dict[str, set[str]] = {}
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
        self._pays.clear()
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
        pays): 0 when it may be applied now, else the seconds it may still wait (nothing of it
        is applied)."""
        rank = self._rank.get(topic, 1)
        left = self._own_wait(topic, partition, offset, at)
        if left <= 0 and partner is not None and partner != customer_id:
            left = self._partner_wait(topic, partition, offset, at, partner)
        if left <= 0:
            return self._go(topic, partition, offset, customer_id)
        waiting = self._waiting.get(customer_id)
        if waiting is None or (at, rank) < (waiting.at, waiting.rank):
            self._waiting[customer_id] = _Waiting(topic, partition, offset, at, rank, customer_id)
        if partner is not None and partner != customer_id:
            self._pays.setdefault(partner, set()).add(customer_id)  # its later records: behind
        return left

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

    def _partner_wait(
        self, topic: str, partition: int, offset: int, at: datetime, partner: str
    ) -> float:
        """The seconds left while the partner has a record not later than this one that waits
        (at most until that record's bound runs out; this record's bound is then that one's)."""
        waiting = self._entry(partner)
        if waiting is None or waiting.at > at:  # the partner's first at the same instant
            return 0.0
        first = self._since.get(waiting.key)
        if first is None or waiting.key == (topic, partition, offset):
            return 0.0
        left = self._bound - (self._clock() - first)
        if left > 0:
            self._since[(topic, partition, offset)] = first
        return left

    def _entry(self, customer_id: str, *, own: bool = True) -> _Waiting | None:
        """The earliest record that this customer's later records wait behind: its own that
        waits (unless not `own`), or a waiting top-up it pays for."""
        paid = tuple(self._pays.get(customer_id, ()))
        whose = (customer_id, *paid) if own else paid
        entries = [w for c in whose if (w := self._waiting.get(c)) is not None]
        return min(entries, key=lambda w: (w.at, w.rank), default=None)

    def until(self, topic: str, partition: int, offset: int) -> float | None:
        """When the bound of a record that waits runs out (monotonic); None if it never
        waited."""
        first = self._since.get((topic, partition, offset))
        return None if first is None else first + self._bound

    def _go(self, topic: str, partition: int, offset: int, customer_id: str) -> float:
        """It may be applied now: if it was a waiting record, nothing waits behind it."""
        waiting = self._waiting.get(customer_id)
        if waiting is not None and waiting.key == (topic, partition, offset):
            self._release(waiting.key)
        return 0.0

    def _release(self, key: tuple[str, int, int]) -> None:
        """Nothing waits behind this record any more (its customer's or a partner's records)."""
        for customer_id, w in list(self._waiting.items()):
            if w.key == key:
                del self._waiting[customer_id]
                for paid in self._pays.values():
                    paid.discard(customer_id)
        self._pays = {p: paid for p, paid in self._pays.items() if paid}

    def admit(
        self, topic: str, partition: int, offset: int, customer_id: str, at: datetime
    ) -> bool:
        """False when a record must not be applied yet because an earlier record of its
        customer waits, or (for a partner) a top-up it pays dated before it (it is decided
        again after that one). The waiting record itself is admitted, to be decided again."""
        return self._blocking(topic, partition, offset, customer_id, at) is None

    def held_back(self, record: InputRecord, customer_id: str, at: datetime) -> Held | None:
        """`admit`, for a record: None when admitted, else the record held behind the one it
        waits for."""
        where = (record.topic, record.partition, record.offset)
        waiting = self._blocking(*where, customer_id, at)
        return None if waiting is None else Held(*where, customer_id, 0.0, after=waiting.owner)

    def _blocking(
        self, topic: str, partition: int, offset: int, customer_id: str, at: datetime
    ) -> _Waiting | None:
        """The waiting record that this one must wait behind (None: it may go)."""
        if not self._waiting:
            return None
        own = self._waiting.get(customer_id)
        if own is not None and own.key == (topic, partition, offset):
            self._release(own.key)  # decided again now: it may wait again
            own = None
        if own is not None:
            if (own.topic, own.partition) == (topic, partition):
                later = offset > own.offset
            else:
                later = (at, self._rank.get(topic, 1)) > (own.at, own.rank)
            if later:
                return self._behind(own, topic, partition, offset)
        # the earliest top-up it pays dated before it (its own records of that instant first)
        waiting = self._entry(customer_id, own=False)
        if waiting is None or at <= waiting.at:
            return None
        # its later records wait behind this one, even once that top-up is decided
        rank = self._rank.get(topic, 1)
        if own is None or (at, rank) < (own.at, own.rank):
            self._waiting[customer_id] = _Waiting(topic, partition, offset, at, rank, waiting.owner)
        return self._behind(waiting, topic, partition, offset)

    def _behind(self, waiting: _Waiting, topic: str, partition: int, offset: int) -> _Waiting:
        """A record waits behind `waiting`: its own bound counts from its first fetch."""
        self._since.setdefault((topic, partition, offset), self._clock())
        return waiting

    def behind(self, record: InputRecord, customer_id: str) -> Held | None:
        """`record` held behind the record its customer's later records wait for (None: none
        waits; an unreadable record keyed by the customer waits behind it too, so that its
        dead letter never overtakes it)."""
        waiting = self._entry(customer_id)
        if waiting is None:
            return None
        at = (record.topic, record.partition, record.offset)
        return Held(*at, customer_id, 0.0, after=waiting.owner)

    def settled(self, topic: str, partition: int, offset: int) -> None:
        """A record was applied (or dead-lettered): it waits no more."""
        if self._since:
            self._since.pop((topic, partition, offset), None)

    def forget(self, topic: str, partition: int, offset: int) -> None:
        """A record was set aside (dead-lettered after it failed): nothing waits for it."""
        self.settled(topic, partition, offset)
        self._release((topic, partition, offset))

    @contextlib.contextmanager
    def trial(self, decoded: Iterable[Decoded]) -> Iterator[None]:
        """Undoes, on the way out, what is noted inside of these records, their partitions and
        their customers, and which partners' later records wait behind them: for a
        trial of them that is rolled back. Nothing else is touched: another lane (ADR 0010),
        with other partitions and customers, may note its own meanwhile. After an assignment
        change inside, what the trial noted is forgotten."""
        marks: dict[tuple[str, int], datetime | None] = {}
        since: dict[tuple[str, int, int], float | None] = {}
        customers: set[str] = set()
        for record, event in decoded:
            marks[(record.topic, record.partition)] = self.read_up_to(
                record.topic, record.partition
            )
            at = (record.topic, record.partition, record.offset)
            since[at] = self._since.get(at)
            if not isinstance(event, Invalid):
                customers.add(event.customer_id)
        waiting = dict(self._waiting)
        pays = {partner: set(paid) for partner, paid in self._pays.items()}
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
            for customer_id in customers:
                _put(self._waiting, customer_id, None if new else waiting.get(customer_id))
            for partner in pays.keys() | self._pays.keys():
                before = set() if new else pays.get(partner, set()) & customers
                paid = (self._pays.get(partner, set()) - customers) | before
                _put(self._pays, partner, paid or None)

    def waiting(self) -> dict[str, tuple[str, int, int]]:
        """customer -> (topic, partition, offset) of the record its later records wait behind
        (for tests, logs)."""
        entries = {c: self._entry(c) for c in self._waiting.keys() | self._pays.keys()}
        return {c: w.key for c, w in entries.items() if w is not None}


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
