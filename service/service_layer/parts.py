"""The parts a failed batch is split into (processor.py): groups of one customer's records,
or of the customers that share a partner's wallet, and halves of runs of groups. Records are
`(position in the batch, record)`, so that any part can be put back in the batch's order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from service.service_layer.ports import InputRecord

# Records of a batch, in the batch's order, as (position in the batch, record).
Unit = list[tuple[int, InputRecord]]


def units(records: Unit, joined: dict[str, str]) -> list[Unit]:
    """The records grouped by key (the customer), or by the group `joined` puts the customer
    in, each group in the batch's order; records without a key stand alone."""
    groups: dict[object, Unit] = {}
    for position, record in records:
        key: object = ("no key", position) if record.key is None else record.key
        if joined and record.key is not None:
            key = joined.get(record.key.decode("utf-8", "replace"), key)
        groups.setdefault(key, []).append((position, record))
    return list(groups.values())


def grouped(links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Customers joined by (customer, partner) links, each to its group's least member."""
    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while parent.setdefault(c, c) != c:
            c = parent[c]
        return c

    for a, b in links:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {c: root(c) for c in parent}


def _size(units: Sequence[Unit]) -> int:
    return sum(len(u) for u in units)


def halves(units: list[Unit]) -> tuple[list[Unit], list[Unit]]:
    """Two non-empty runs of units with about half of the records each."""
    total, count = _size(units), 0
    for i, unit in enumerate(units[:-1]):
        count += len(unit)
        if count * 2 >= total:
            return units[: i + 1], units[i + 1 :]
    return units[:-1], units[-1:]


def flat(units: Sequence[Unit]) -> list[InputRecord]:
    """The records of `units` in the batch's order."""
    return [record for _, record in sorted((p for u in units for p in u), key=lambda p: p[0])]
