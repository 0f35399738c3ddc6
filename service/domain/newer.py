"""Whether an event is newer than what a wallet knows: by counter (sequence, version) when both
have one, else by (occurred_at, event_id)."""

from __future__ import annotations

from datetime import datetime


def is_stale(
    highest: int | None, newest: tuple[datetime, str], event: tuple[str, int | None, datetime]
) -> bool:
    """Not newer: by counter (sequence/version) when the event has one and the wallet has seen
    one, else by (occurred_at, event_id) against the greatest applied. A repeated event is
    always stale, and two events at the same instant are ordered the same way on every pass."""
    event_id, counter, at = event
    if counter is not None and highest is not None:
        return counter <= highest
    return (at, event_id) <= newest


def newest(old: tuple[datetime, str] | None, at: datetime, event_id: str) -> tuple[datetime, str]:
    return (at, event_id) if old is None else max(old, (at, event_id))


def highest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
