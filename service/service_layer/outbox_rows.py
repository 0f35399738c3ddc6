"""The relay's port to the outbox table: the rows it leases, and what it marks on them
(adapters/postgres/outbox_store.py implements it; adapters/kafka/relay.py uses it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class LeasedRow:
    """One outbox row the relay leased, to publish."""

    id: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Any  # jsonb: [[name, base64 value], ...]
    attempts: int  # failed sends before this one


class OutboxRows(Protocol):
    """The relay's side of the outbox table."""

    async def lease(self, limit: int, seconds: float) -> list[LeasedRow]:
        """Up to `limit` records due (not published, not set aside, not waiting for a retry),
        oldest first, kept from other relays for `seconds`."""

    async def published(self, ids: Sequence[int]) -> None: ...

    async def retry_later(self, failed: Sequence[tuple[int, str, float]]) -> None:
        """(id, error, seconds): sent again no sooner than that."""

    async def set_aside(self, refused: Sequence[tuple[int, str]]) -> None:
        """(id, error): refused for good, no longer sent until an operator retries it."""
