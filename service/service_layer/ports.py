"""What the service layer needs from the outside world (adapters implement these)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import field
from datetime import date, datetime
from types import TracebackType
from typing import Protocol, Self

from service.domain.model import BalanceChanged, SettingsUpdated, TopUp, Wallet
from service.domain.values import value


@value
class InputRecord:
    """One consumed Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@value
class Claim:
    """A daily key to take, with what became of the attempt so far."""

    topup: TopUp
    phase: str  # claimed | done
    result: str | None = None  # invoice_requested | credit_issued | failed
    reason: str | None = None
    detail: str | None = None
    next_attempt_at: datetime | None = None
    # (name, base64 value) headers carrying the decision's trace to a later output event
    trace_headers: tuple[tuple[str, str], ...] = ()


@value
class OutboxRecord:
    dedupe_key: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, str], ...] = field(default=())


@value
class DecisionLog:
    """One line of the decision log: what one input record came to, and why."""

    topic: str
    partition: int
    offset: int
    customer_id: str | None
    event_id: str | None
    outcome: str  # applied | stale | dead_lettered | triggered | suppressed | blocked | failed
    reason: str | None = None
    detail: str = ""
    method: str | None = None
    business_date: date | None = None

    @classmethod
    def of(
        cls,
        record: InputRecord,
        event: BalanceChanged | SettingsUpdated | None,
        outcome: str,
        reason: str | None,
        method: str | None = None,
    ) -> DecisionLog:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            event.customer_id if event else None,
            event.event_id if event else None,
            outcome,
            reason,
            method=method,
        )


# Decisions worth explaining later ("why no top-up?"): not the not-due or stale ones.
RECORDED_OUTCOMES = frozenset({"triggered", "failed", "suppressed", "blocked", "dead_lettered"})


def merge_decisions(
    entries: Sequence[DecisionLog],
) -> list[tuple[tuple[str, str, str], DecisionLog, int]]:
    """One row per (customer, outcome, reason): the last entry and how many there were."""
    merged: dict[tuple[str, str, str], tuple[DecisionLog, int]] = {}
    for e in entries:
        if e.customer_id is None or e.outcome not in RECORDED_OUTCOMES:
            continue
        key = (e.customer_id, e.outcome, e.reason or "")
        times = merged[key][1] + 1 if key in merged else 1
        merged[key] = (e, times)
    return [(key, e, times) for key, (e, times) in sorted(merged.items())]


class Tracer(Protocol):
    """Optional tracing (OpenTelemetry when configured; None costs nothing)."""

    def decided(
        self, record: InputRecord, customer_id: str, outcome: str
    ) -> tuple[tuple[str, str], ...]:
        """Records the decision taken on `record` as a span, a child of the trace context in
        the record's headers (if any), and returns the (name, base64 value) headers that carry
        that span on to the output event."""


class BatchStore(Protocol):
    async def lock_wallets(self, customer_ids: Collection[str], since: date) -> dict[str, Wallet]:
        """Loads (creating empty ones) and locks wallets, with their daily keys since `since`."""

    async def save_wallets(self, wallets: Sequence[Wallet]) -> None: ...

    async def claim_daily_keys(self, claims: Sequence[Claim]) -> set[tuple[str, date]]:
        """Inserts the claims; returns the (customer_id, business_date) pairs actually taken."""

    async def add_outbox(self, records: Sequence[OutboxRecord]) -> None: ...

    async def record_decisions(self, entries: Sequence[DecisionLog], at: datetime) -> None:
        """Keeps the last decision per customer, outcome and reason (RECORDED_OUTCOMES only)."""


class UnitOfWork(Protocol):
    """One database transaction. Leaving it without commit() rolls back."""

    @property
    def store(self) -> BatchStore: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...
