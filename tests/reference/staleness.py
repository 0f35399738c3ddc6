"""The staleness rule of docs/contract.md, written apart from the service's code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class Seen:
    """What one wallet has seen of one input topic: the greatest (occurred_at, event_id)
    applied, and the highest counter (sequence or version) seen, stale events included."""

    newest: tuple[datetime, str] | None = None
    highest: int | None = None

    def newer(self, at: datetime, event_id: str, counter: int | None) -> bool:
        """The counter decides against the highest seen when both sides have one; else
        (occurred_at, event_id) must be above the greatest applied (so a repeated event is
        stale whenever it comes back). The first event is always newer."""
        if self.newest is None:
            return True
        if counter is not None and self.highest is not None:
            return counter > self.highest
        return (at, event_id) > self.newest

    def see(self, at: datetime, event_id: str, counter: int | None) -> bool:
        """Takes in one event: whether it applies (newer). The highest counter seen rises
        either way; the greatest applied only with an event that applies."""
        newer = self.newer(at, event_id, counter)
        if counter is not None:
            self.highest = counter if self.highest is None else max(self.highest, counter)
        if newer:
            key = (at, event_id)
            self.newest = key if self.newest is None else max(self.newest, key)
        return newer
