"""Which records are held, and which records must wait behind them (see alignment.py).

A held record holds back the records after it of its customer: in its own partition, those at a
higher offset; in the other topic, those dated after it (settings first at the same instant).
Across a partner's wallet (a top-up that a partner pays reads the partner's balance and reserves
from it):

- the partner's records dated after a held record of a customer it pays wait behind it;
- a due top-up waits behind the partner's held records dated at or before it (the partner's
  record first at the same instant) and behind the held records of the other customers it pays
  dated before it (by customer id at the same instant).

Every held record is noted, so that nothing of its customer overtakes it, even once the record
it waits behind is decided. `owner` is whose record, waiting for the other topic, holds it back
in the end: the consumer hands it in again once that customer has none waiting (Held.after).
Pure bookkeeping: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

Key = tuple[str, int, int]  # (topic, partition, offset)


@dataclass(frozen=True, slots=True)
class Entry:
    """A held record."""

    topic: str
    partition: int
    offset: int
    at: datetime
    rank: int  # 0 settings, 1 other topics: settings first at the same instant
    owner: str
    customer: str = ""
    behind: Entry | None = None  # the held record it waits behind (None: it waits itself)

    @property
    def key(self) -> Key:
        return (self.topic, self.partition, self.offset)


Snapshot = tuple[dict[str, dict[Key, Entry]], dict[str, set[str]]]


class Behind:
    def __init__(self) -> None:
        self._held: dict[str, dict[Key, Entry]] = {}  # customer -> its held records
        self._pays: dict[str, set[str]] = {}  # partner -> customers with held records it pays

    def __bool__(self) -> bool:
        return bool(self._held)

    def involves(self, customer_id: str) -> bool:
        """Whether the customer has a held record or pays for one (else nothing of it waits)."""
        return customer_id in self._held or customer_id in self._pays

    def clear(self) -> None:
        self._held.clear()
        self._pays.clear()

    def note(self, customer_id: str, entry: Entry, partner: str | None) -> None:
        """A record of this customer is held (paid by `partner`, if one pays)."""
        self._held.setdefault(customer_id, {})[entry.key] = entry
        if partner is not None and partner != customer_id:
            self._pays.setdefault(partner, set()).add(customer_id)

    def release(self, customer_id: str, key: Key) -> None:
        """The record is decided again (or applied, or set aside): it holds nothing back."""
        held = self._held.get(customer_id)
        if held is None or held.pop(key, None) is None or held:
            return
        del self._held[customer_id]
        for partner in [p for p, paid in self._pays.items() if customer_id in paid]:
            self._pays[partner].discard(customer_id)
            if not self._pays[partner]:
                del self._pays[partner]

    def forget(self, key: Key) -> None:
        """A record set aside (its customer unknown here)."""
        for customer_id in [c for c, held in self._held.items() if key in held]:
            self.release(customer_id, key)

    def blocking(self, customer_id: str, key: Key, at: datetime | None, rank: int) -> Entry | None:
        """The held record that this record of the customer must wait behind (None: it may
        go): in its own partition, the first held one before it; in another, the first held
        one (its head, as Kafka Streams compares partition heads) if dated before it. An
        unreadable record (`at` None) waits behind any of its customer's."""
        topic, partition, offset = key
        found = []
        for e in self._heads(customer_id):
            if (e.topic, e.partition) == (topic, partition):
                if offset > e.offset:
                    found.append(e)
            elif at is None or (at, rank) > (e.at, e.rank):
                found.append(e)
        for paid in self._pays.get(customer_id, ()):  # not those that wait for this record
            heads = self._heads(paid)
            found += [
                e
                for e in heads
                if (at is None or at > e.at) and not _waits_for(e, customer_id, key, at, rank)
            ]
        return min(found, key=lambda e: (e.at, e.rank, e.owner), default=None)

    def _heads(self, customer_id: str) -> list[Entry]:
        """The customer's first held record in each partition."""
        heads: dict[tuple[str, int], Entry] = {}
        for e in self._held.get(customer_id, {}).values():
            head = heads.get((e.topic, e.partition))
            if head is None or e.offset < head.offset:
                heads[(e.topic, e.partition)] = e
        return list(heads.values())

    def before_top_up(
        self, customer_id: str, key: Key, at: datetime, rank: int, partner: str
    ) -> Entry | None:
        """The earliest held record that a top-up of this customer, paid by `partner`, must
        wait behind: the partner's dated at or before it, and those of the other customers
        the partner pays dated before it (at the same instant, by customer id). Records that
        wait for this one (or for a later one of its customer) are not counted."""
        found = [e for e in self._held.get(partner, {}).values() if e.at <= at]
        for other in self._pays.get(partner, ()):
            if other != customer_id:
                mine = self._held.get(other, {}).values()
                found += [e for e in mine if (e.at, other) < (at, customer_id)]
        found = [e for e in found if e.key != key and not _waits_for(e, customer_id, key, at, rank)]
        return min(found, key=lambda e: (e.at, e.rank), default=None)

    def earliest(self, customer_id: str) -> Entry | None:
        held = self._held.get(customer_id, {}).values()
        return min(held, key=lambda e: (e.at, e.rank, e.offset), default=None)

    def customers(self) -> list[str]:
        return list(self._held)

    def snapshot(self, customers: Iterable[str]) -> Snapshot:
        """What these customers' held records are, and whom each partner pays."""
        held = {c: dict(self._held[c]) for c in customers if c in self._held}
        return held, {p: set(paid) for p, paid in self._pays.items()}

    def restore(self, customers: set[str], snapshot: Snapshot | None) -> None:
        """These customers' held records (and whom partners pay among them) as in `snapshot`
        (None: as if never noted); others' are kept."""
        held, pays = snapshot if snapshot is not None else ({}, {})
        for c in customers:
            if c in held:
                self._held[c] = dict(held[c])
            else:
                self._held.pop(c, None)
        for partner in pays.keys() | self._pays.keys():
            paid = (self._pays.get(partner, set()) - customers) | (
                pays.get(partner, set()) & customers
            )
            if paid:
                self._pays[partner] = paid
            else:
                self._pays.pop(partner, None)


def _waits_for(e: Entry, customer_id: str, key: Key, at: datetime | None, rank: int) -> bool:
    """Whether `e` waits, directly or down its chain, behind this record of the customer or
    behind one after it."""
    q = e.behind
    while q is not None:
        if q.customer == customer_id:
            if (q.topic, q.partition) == key[:2]:
                if q.offset >= key[2]:
                    return True
            elif at is not None and (q.at, q.rank) >= (at, rank):
                return True
        q = q.behind
    return False
