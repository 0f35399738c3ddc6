"""What the service layer needs from the outside world (adapters implement these)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from service.contract import messages
from service.domain.model import (
    BalanceChanged,
    InvoiceStatus,
    InvoiceStatusChanged,
    OpenInvoice,
    SettingsUpdated,
    TopUp,
    Wallet,
)
from service.domain.reasons import DECISION_OUTCOMES, DeadLetterReason, RecordOutcome
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


# The header an operator's redrive (`auto-topup dlq redrive`) adds to a record it publishes
# again: its value makes the record a new judgement of the same event (see SettingsKey).
REDRIVE_HEADER = messages.REDRIVE

# A settings event by identity: (customer_id, event_id, redrive), where redrive is the value of
# the REDRIVE_HEADER header ("" without one). The rules' rejection of one is remembered by it.
SettingsKey = tuple[str, str, str]


def settings_key(record: InputRecord, event: SettingsUpdated) -> SettingsKey:
    redrive = ""
    for name, raw in record.headers:
        if name == REDRIVE_HEADER:
            redrive = (raw or b"").decode("utf-8", "replace")
    return (event.customer_id, event.event_id, redrive)


@value
class Claim:
    """A daily key to take, with what became of the attempt so far."""

    topup: TopUp
    phase: str  # a ChargePhase: claimed | done
    result: str | None = None  # a ClaimResult: invoice_requested | credit_issued | failed
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
    outcome: str  # a RecordOutcome
    reason: str | None = None  # a DeadLetterReason, StaleReason, BlockReason or FailureReason
    detail: str = ""
    method: str | None = None
    business_date: date | None = None

    @classmethod
    def of(
        cls,
        record: InputRecord,
        event: BalanceChanged | SettingsUpdated | InvoiceStatusChanged | None,
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
RECORDED_OUTCOMES = DECISION_OUTCOMES | {RecordOutcome.DEAD_LETTERED}


class Tally(StrEnum):
    """What one count of a BatchReport counts."""

    CONSUMED = "consumed"  # input records of one topic, by outcome (applied, stale)
    DECISION = "decision"  # decisions, by outcome (triggered, suppressed, blocked)
    DEAD_LETTER = "dead_letter"  # dead letters, by reason


class CountKey(NamedTuple):
    """The key of a BatchReport count: what is counted, and which outcome or reason."""

    tally: Tally
    # (a str only for a dead-letter reason no enum lists yet, e.g. a rail's own: counted as
    # it is rather than failing the batch)
    code: RecordOutcome | DeadLetterReason | str
    topic: str | None = None  # the input topic (Tally.CONSUMED only)

    @classmethod
    def consumed(cls, topic: str, outcome: str) -> CountKey:
        """Records of an input topic that came to `outcome` (applied or stale)."""
        return cls(Tally.CONSUMED, RecordOutcome(outcome), topic)

    @classmethod
    def decision(cls, outcome: str) -> CountKey:
        """Decisions that came to `outcome` (triggered, suppressed or blocked)."""
        return cls(Tally.DECISION, RecordOutcome(outcome))

    @classmethod
    def dead_letter(cls, reason: str) -> CountKey:
        """Records dead-lettered for `reason` (a DeadLetterReason, or a rail's own code)."""
        known = reason in DeadLetterReason.__members__.values()
        return cls(Tally.DEAD_LETTER, DeadLetterReason(reason) if known else reason)


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


@value
class InvoiceRow:
    """A row of `open_invoices`: an invoice this service requested (Cheque / TT)."""

    invoice_request_id: str  # the invoice-requested event's event_id
    customer_id: str
    business_date: date
    amount: Decimal
    currency: str
    requested_at: datetime  # the deciding batch's clock
    status: str = "requested"  # requested | an InvoiceStatus
    closed_at: datetime | None = None
    overdue_noticed_at: datetime | None = None


@value
class InvoiceChange:
    """A status of an open invoice to write (`closed_at` set: paid or void)."""

    invoice_request_id: str
    status: InvoiceStatus
    closed_at: datetime | None


class InvoiceStore(Protocol):
    """The open invoices, in the batch's transaction (part of every BatchStore)."""

    async def open_invoices(
        self, customer_ids: Collection[str]
    ) -> dict[str, tuple[OpenInvoice, ...]]:
        """The open invoices (not closed) of these customers, oldest first; none: absent."""

    async def add_open_invoices(self, rows: Sequence[InvoiceRow]) -> None:
        """Inserts invoices just requested (one already there stays as it is)."""

    async def set_invoice_statuses(self, changes: Sequence[InvoiceChange]) -> None:
        """Writes statuses of open invoices (one id at most once; a closed one stays so)."""


class OverdueStore(Protocol):
    """What the overdue-notice worker needs: one transaction per round."""

    async def notify_overdue(
        self,
        before: datetime,
        limit: int,
        build: Callable[[Sequence[InvoiceRow]], Sequence[OutboxRecord]],
        at: datetime,
    ) -> int:
        """In one transaction: takes up to `limit` open invoices requested before `before`
        and not noticed yet (skipping those another transaction holds), adds the outbox rows
        `build` makes of them, and marks them noticed at `at`. Returns how many it took."""


class BatchStore(InvoiceStore, Protocol):
    async def lock_wallets(
        self, customer_ids: Collection[str], since: date, partners: bool = False
    ) -> dict[str, Wallet]:
        """Loads (creating empty ones) and locks wallets, with their daily keys since `since`.
        With `partners`, the existing wallets of the partners their stored settings name are
        locked in the same statement and order (lanes.py); a store without concurrent
        transactions may leave them to the caller's next call."""

    async def save_wallets(self, wallets: Sequence[Wallet]) -> None: ...

    async def claim_daily_keys(self, claims: Sequence[Claim]) -> set[tuple[str, date]]:
        """Inserts the claims; returns the (customer_id, business_date) pairs actually taken."""

    async def add_outbox(self, records: Sequence[OutboxRecord]) -> None: ...

    async def rejected_settings(self, keys: Sequence[SettingsKey]) -> set[SettingsKey]:
        """Those of these settings events that the rules rejected before."""

    async def add_rejected_settings(
        self, rejected: Sequence[tuple[SettingsKey, str]], at: datetime
    ) -> None:
        """Remembers settings events the rules rejected, with the reason (known ones stay)."""

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
