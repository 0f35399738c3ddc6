"""What a replay reports: one row per decision, joined with the outbox rows it queued.

The replay command runs batches through the same BatchHandler and BatchProcessor as the
service. Around the unit of work it puts an `OutboxTap`, which keeps the outbox rows of the
transactions that committed, so that each triggered or failed decision can name the output
event it queued (an output event's outbox dedupe_key is its event_id).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from service.config import Topics
from service.domain.model import OpenInvoice, Wallet
from service.domain.reasons import RecordOutcome
from service.service_layer.ports import (
    BatchStore,
    Claim,
    DecisionLog,
    InputRecord,
    InvoiceChange,
    InvoiceRow,
    OutboxRecord,
    SettingsKey,
    UnitOfWork,
    UnitOfWorkFactory,
)

# The outcomes a replay reports (the handler logs nothing for a balance that is not due).
REPORTED_OUTCOMES = (
    RecordOutcome.TRIGGERED,
    RecordOutcome.FAILED,
    RecordOutcome.SUPPRESSED,
    RecordOutcome.BLOCKED,
    RecordOutcome.DEAD_LETTERED,
    RecordOutcome.STALE,
)
# The outcomes that queue an output event (the others queue nothing, or a dead letter).
_PUBLISHING = (RecordOutcome.TRIGGERED, RecordOutcome.FAILED)
REPORT_FORMATS = (".csv", ".json")


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One decision of the replay, with the output event it queued (triggered / failed)."""

    customer_id: str | None
    topic: str
    partition: int
    offset: int
    event_id: str | None
    outcome: str
    reason: str | None
    method: str | None
    business_date: date | None
    output_topic: str | None = None
    output_event_id: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["business_date"] = self.business_date.isoformat() if self.business_date else None
        return row


COLUMNS = tuple(ReplayRow.__dataclass_fields__)


class _TappedStore:
    """The inner store, with the outbox rows it is given kept aside."""

    def __init__(self, inner: BatchStore, queued: list[OutboxRecord]) -> None:
        self._inner = inner
        self._queued = queued

    async def lock_wallets(
        self, customer_ids: Collection[str], since: date, partners: bool = False
    ) -> dict[str, Wallet]:
        return await self._inner.lock_wallets(customer_ids, since, partners)

    async def save_wallets(self, wallets: Sequence[Wallet]) -> None:
        await self._inner.save_wallets(wallets)

    async def claim_daily_keys(self, claims: Sequence[Claim]) -> set[tuple[str, date]]:
        return await self._inner.claim_daily_keys(claims)

    async def add_outbox(self, records: Sequence[OutboxRecord]) -> None:
        await self._inner.add_outbox(records)
        self._queued.extend(records)

    async def rejected_settings(self, keys: Sequence[SettingsKey]) -> set[SettingsKey]:
        return await self._inner.rejected_settings(keys)

    async def add_rejected_settings(
        self, rejected: Sequence[tuple[SettingsKey, str]], at: datetime
    ) -> None:
        await self._inner.add_rejected_settings(rejected, at)

    async def record_decisions(self, entries: Sequence[DecisionLog], at: datetime) -> None:
        await self._inner.record_decisions(entries, at)

    async def open_invoices(
        self, customer_ids: Collection[str]
    ) -> dict[str, tuple[OpenInvoice, ...]]:
        return await self._inner.open_invoices(customer_ids)

    async def add_open_invoices(self, rows: Sequence[InvoiceRow]) -> None:
        await self._inner.add_open_invoices(rows)

    async def set_invoice_statuses(self, changes: Sequence[InvoiceChange]) -> None:
        await self._inner.set_invoice_statuses(changes)


class _TappedUnitOfWork:
    def __init__(self, inner: UnitOfWork, tap: OutboxTap) -> None:
        self._inner = inner
        self._tap = tap
        self._queued: list[OutboxRecord] = []

    @property
    def store(self) -> BatchStore:
        return _TappedStore(self._inner.store, self._queued)

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        await self._inner.commit()
        self._tap.committed.extend(self._queued)  # a rolled-back transaction queued nothing
        self._queued = []


@dataclass
class OutboxTap:
    """A unit-of-work factory around another one: keeps the outbox rows that were committed."""

    inner: UnitOfWorkFactory
    committed: list[OutboxRecord] = field(default_factory=list)

    def __call__(self) -> UnitOfWork:
        return _TappedUnitOfWork(self.inner(), self)

    def take(self) -> list[OutboxRecord]:
        """The rows committed since the last call."""
        taken, self.committed = self.committed, []
        return taken


def output_events(
    outbox: Iterable[OutboxRecord], topics: Topics
) -> dict[tuple[str, date], tuple[str, str]]:
    """(customer_id, business_date) -> (topic, event_id) of the output events among the rows.

    One daily key is one decision, published under one event: the key identifies it.
    """
    wanted = {topics.invoice_requested, topics.credit_issued, topics.top_up_failed}
    found: dict[tuple[str, date], tuple[str, str]] = {}
    for row in outbox:
        if row.topic not in wanted or row.value is None:
            continue
        body = json.loads(row.value)
        key = (body["customer_id"], date.fromisoformat(body["business_date"]))
        found[key] = (row.topic, row.dedupe_key)
    return found


def rows_of(
    log: Iterable[DecisionLog],
    records: Sequence[InputRecord],
    outbox: Iterable[OutboxRecord],
    topics: Topics,
) -> list[ReplayRow]:
    """The report rows of one batch: its decisions, each with the output it queued.

    A record that could not be decoded has no customer_id of its own: its Kafka key (which the
    contract says is the customer_id) names the customer instead.
    """
    keys = {(r.topic, r.partition, r.offset): r.key for r in records}
    outputs = output_events(outbox, topics)
    rows = []
    for e in log:
        if e.outcome not in REPORTED_OUTCOMES:
            continue
        customer = e.customer_id
        if customer is None:
            key = keys.get((e.topic, e.partition, e.offset))
            customer = key.decode("utf-8", "replace") if key is not None else None
        out_topic: str | None = None
        out_id: str | None = None
        if e.outcome == RecordOutcome.DEAD_LETTERED:
            out_topic = topics.dead_letter
        elif e.outcome in _PUBLISHING and customer and e.business_date:
            out_topic, out_id = outputs.get((customer, e.business_date), (None, None))
        rows.append(
            ReplayRow(
                customer,
                e.topic,
                e.partition,
                e.offset,
                e.event_id,
                e.outcome,
                e.reason,
                e.method,
                e.business_date,
                out_topic,
                out_id,
                e.detail,
            )
        )
    return rows


def by_customer(rows: Iterable[ReplayRow]) -> list[ReplayRow]:
    """Customer by customer; each customer's rows in the order they were decided."""
    return sorted(rows, key=lambda r: r.customer_id or "")


@dataclass
class Summary:
    records: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    outputs: Counter[str] = field(default_factory=Counter)  # by topic, dead letters included
    stripe_claims: int = 0

    def add(self, records: Sequence[InputRecord], rows: Sequence[ReplayRow]) -> None:
        self.records += len(records)
        self.by_topic.update(r.topic for r in records)
        self.outcomes.update((r.outcome, r.reason or "") for r in rows)
        self.outputs.update(
            r.output_topic
            for r in rows
            if r.output_topic and (r.output_event_id or r.outcome == RecordOutcome.DEAD_LETTERED)
        )

    def lines(self) -> list[str]:
        out = [f"records: {self.records}"]
        out += [f"  {topic}: {n}" for topic, n in sorted(self.by_topic.items())]
        if self.outcomes:
            width = max(len(o) for o, _ in self.outcomes) + 2
            out.append("decisions (outcome, reason, count):")
            out += [
                f"  {outcome:<{width}}{reason or '-':<32}{n}"
                for (outcome, reason), n in sorted(self.outcomes.items())
            ]
        else:
            out.append("decisions: none")
        return out


# A CSV cell a spreadsheet would run as a formula (ids and details come from producers).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell as written to the CSV report: text that a spreadsheet would read as a formula
    gets a leading apostrophe (OWASP's CSV injection advice); numbers and dates are kept."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def write_report(path: Path, rows: Sequence[ReplayRow]) -> None:
    """One row per decision, as CSV or JSON (by the file's extension). JSON keeps every value
    as it is; CSV neutralises what a spreadsheet would run (`csv_cell`)."""
    dicts = [r.as_dict() for r in rows]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(dicts, indent=1) + "\n", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in d.items()} for d in dicts)
