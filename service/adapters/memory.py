"""An in-memory unit of work with the semantics of the PostgreSQL one.

The committed state is four "tables": wallets (without attempt dates, which live only in the
daily keys, as in the real schema), daily_keys (unique on customer_id and business_date),
outbox (unique on dedupe_key) and the decision summary. A unit of work works on a staged copy
that replaces the committed state only on commit(); leaving it without commit() throws the copy
away.

With a `loader`, the store reads through to another database (the dry-run replay reads
PostgreSQL this way): a wallet that is not in memory yet is loaded once, with its daily keys,
and from then on every change stays in memory. The loader only reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from types import TracebackType
from typing import Self

from service.domain.model import OpenInvoice, Wallet
from service.service_layer.history import HistoryEntry, history_entries
from service.service_layer.ports import (
    Claim,
    DecisionLog,
    InvoiceChange,
    InvoiceRow,
    OutboxRecord,
    SettingsKey,
    merge_decisions,
)

WalletLoader = Callable[[Sequence[str], date], Awaitable[Mapping[str, Wallet]]]
"""Reads the wallets that exist elsewhere among the given ids (sorted), each with the dates of
its daily keys from the given date on as `attempt_dates`; a wallet it does not know is left out."""

RejectionLoader = Callable[[Sequence[SettingsKey]], Awaitable[set[SettingsKey]]]
"""Reads which of these settings events the other database knows as rejected by the rules."""

InvoiceLoader = Callable[[Sequence[str]], Awaitable[Sequence[InvoiceRow]]]
"""Reads the open invoices (not closed) of these customers (sorted) in the other database."""


@dataclass(slots=True)
class Tables:
    """Rows in insertion order. Wallets, claims and outbox records are immutable values."""

    wallets: dict[str, Wallet] = field(default_factory=dict)
    daily_keys: list[Claim] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    # decision_summary: (customer, outcome, reason) -> (last entry, when, how many times)
    decisions: dict[tuple[str, str, str], tuple[DecisionLog, datetime, int]] = field(
        default_factory=dict
    )
    # Daily keys that the loader found in the other database: taken, though not claimed here.
    loaded_keys: set[tuple[str, date]] = field(default_factory=set)
    # rejected_settings; and the keys already asked of the other database
    rejected: set[SettingsKey] = field(default_factory=set)
    asked: set[SettingsKey] = field(default_factory=set)
    # open_invoices, by invoice_request_id (a wallet's open invoices live only here, as in the
    # real schema)
    invoices: dict[str, InvoiceRow] = field(default_factory=dict)
    invoices_asked: set[str] = field(default_factory=set)  # customers read through already
    # customer_history (append-only; a row's id is its position + 1)
    history: list[HistoryEntry] = field(default_factory=list)

    def copy(self) -> Tables:
        return Tables(
            dict(self.wallets),
            list(self.daily_keys),
            list(self.outbox),
            dict(self.decisions),
            set(self.loaded_keys),
            set(self.rejected),
            set(self.asked),
            dict(self.invoices),
            set(self.invoices_asked),
            list(self.history),
        )


class MemoryStore:
    """BatchStore on staged tables, with the semantics of PgBatchStore's SQL."""

    def __init__(
        self,
        tables: Tables,
        loader: WalletLoader | None = None,
        rejections: RejectionLoader | None = None,
        invoices: InvoiceLoader | None = None,
    ) -> None:
        self._t = tables
        self._loader = loader
        self._rejections = rejections
        self._invoices = invoices

    async def lock_wallets(
        self, customer_ids: Collection[str], since: date, partners: bool = False
    ) -> dict[str, Wallet]:
        # `partners` is left to the caller's next call: no transaction runs beside this one.
        wanted = sorted(set(customer_ids))
        missing = [i for i in wanted if i not in self._t.wallets]
        if missing and self._loader is not None:
            await self._load(missing, since)
        for customer_id in wanted:  # ensure_wallets: ON CONFLICT DO NOTHING
            self._t.wallets.setdefault(customer_id, Wallet(customer_id))
        taken: dict[str, set[date]] = {i: set() for i in wanted}
        for claim in self._t.daily_keys:  # recent_daily_keys
            t = claim.topup
            if t.customer_id in taken and t.business_date >= since:
                taken[t.customer_id].add(t.business_date)
        for customer_id, business_date in self._t.loaded_keys:
            if customer_id in taken and business_date >= since:
                taken[customer_id].add(business_date)
        return {
            i: replace(self._t.wallets[i], attempt_dates=frozenset(taken[i]), open_invoices=())
            for i in wanted
        }

    async def _load(self, missing: Sequence[str], since: date) -> None:
        assert self._loader is not None
        loaded = await self._loader(missing, since)
        asked = set(missing)
        for customer_id, wallet in loaded.items():
            if customer_id not in asked or wallet.customer_id != customer_id:
                raise ValueError(f"the wallet loader returned {customer_id!r}, not asked for")
            self._t.loaded_keys.update((customer_id, d) for d in wallet.attempt_dates)
            self._t.wallets[customer_id] = replace(wallet, attempt_dates=frozenset())

    async def save_wallets(self, wallets: Sequence[Wallet]) -> None:
        for wallet in wallets:  # UPDATE ... WHERE customer_id = ...: only existing rows
            if wallet.customer_id in self._t.wallets:
                # The table has no attempt_dates column: they come back from daily_keys.
                self._t.wallets[wallet.customer_id] = replace(
                    wallet, attempt_dates=frozenset(), open_invoices=()
                )

    async def claim_daily_keys(self, claims: Sequence[Claim]) -> set[tuple[str, date]]:
        existing = {(c.topup.customer_id, c.topup.business_date) for c in self._t.daily_keys}
        existing |= self._t.loaded_keys
        inserted: set[tuple[str, date]] = set()
        for claim in claims:  # ON CONFLICT (customer_id, business_date) DO NOTHING RETURNING
            key = (claim.topup.customer_id, claim.topup.business_date)
            if key in existing:
                continue
            existing.add(key)
            inserted.add(key)
            self._t.daily_keys.append(claim)
        return inserted

    async def add_outbox(self, records: Sequence[OutboxRecord]) -> None:
        existing = {r.dedupe_key for r in self._t.outbox}
        for record in records:  # ON CONFLICT (dedupe_key) DO NOTHING
            if record.dedupe_key not in existing:
                existing.add(record.dedupe_key)
                self._t.outbox.append(record)

    async def rejected_settings(self, keys: Sequence[SettingsKey]) -> set[SettingsKey]:
        found = {k for k in keys if k in self._t.rejected}
        unknown = [k for k in keys if k not in self._t.rejected and k not in self._t.asked]
        if unknown and self._rejections is not None:
            self._t.asked.update(unknown)  # read through once, as wallets are
            loaded = await self._rejections(unknown)
            self._t.rejected.update(loaded)
            found |= set(loaded)
        return found

    async def add_rejected_settings(
        self, rejected: Sequence[tuple[SettingsKey, str]], at: datetime
    ) -> None:
        self._t.rejected.update(k for k, _ in rejected)

    async def open_invoices(
        self, customer_ids: Collection[str]
    ) -> dict[str, tuple[OpenInvoice, ...]]:
        wanted = set(customer_ids)
        unknown = sorted(wanted - self._t.invoices_asked)
        if unknown and self._invoices is not None:
            self._t.invoices_asked.update(unknown)  # read through once, as wallets are
            for row in await self._invoices(unknown):
                self._t.invoices.setdefault(row.invoice_request_id, row)
        rows = sorted(
            (r for r in self._t.invoices.values() if r.customer_id in wanted and not r.closed_at),
            key=lambda r: (r.requested_at, r.invoice_request_id),
        )
        found: dict[str, tuple[OpenInvoice, ...]] = {}
        for r in rows:
            opened = OpenInvoice(r.invoice_request_id, r.business_date)
            found[r.customer_id] = (*found.get(r.customer_id, ()), opened)
        return found

    async def add_open_invoices(self, rows: Sequence[InvoiceRow]) -> None:
        for row in rows:  # ON CONFLICT (invoice_request_id) DO NOTHING
            self._t.invoices.setdefault(row.invoice_request_id, row)

    async def set_invoice_statuses(self, changes: Sequence[InvoiceChange]) -> None:
        for change in changes:  # only rows still open
            row = self._t.invoices.get(change.invoice_request_id)
            if row is not None and row.closed_at is None:
                self._t.invoices[row.invoice_request_id] = replace(
                    row, status=change.status.value, closed_at=change.closed_at
                )

    async def record_decisions(self, entries: Sequence[DecisionLog], at: datetime) -> None:
        self._t.history.extend(history_entries(entries, at))
        for key, entry, times in merge_decisions(entries):
            before = self._t.decisions.get(key)
            self._t.decisions[key] = (entry, at, times + (before[2] if before else 0))


class MemoryDatabase:
    """The committed state, and the factory of units of work on it."""

    def __init__(
        self,
        loader: WalletLoader | None = None,
        rejections: RejectionLoader | None = None,
        invoices: InvoiceLoader | None = None,
    ) -> None:
        self.committed = Tables()
        self.commits = 0
        self.loader = loader
        self.rejections = rejections
        self.invoices = invoices

    def unit_of_work(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def snapshot(self) -> Tables:
        return self.committed.copy()


class MemoryOverdueStore:
    """The overdue-notice worker's store on a MemoryDatabase: each round commits on its own,
    as PgOverdueStore's transaction does (rows are never held here: nothing to skip)."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    async def notify_overdue(
        self,
        before: datetime,
        limit: int,
        build: Callable[[Sequence[InvoiceRow]], Sequence[OutboxRecord]],
        at: datetime,
    ) -> int:
        async with self._db.unit_of_work() as uow:
            tables = uow.tables
            taken = sorted(
                (
                    r
                    for r in tables.invoices.values()
                    if r.closed_at is None
                    and r.overdue_noticed_at is None
                    and r.requested_at < before
                ),
                key=lambda r: r.requested_at,
            )[:limit]
            if not taken:
                return 0
            await uow.store.add_outbox(build(taken))
            for r in taken:
                tables.invoices[r.invoice_request_id] = replace(r, overdue_noticed_at=at)
            await uow.commit()
        return len(taken)


class MemoryUnitOfWork:
    """One "transaction": changes are staged and become visible only on commit()."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self._staged: Tables | None = None

    @property
    def store(self) -> MemoryStore:
        db = self._db
        return MemoryStore(self.tables, db.loader, db.rejections, db.invoices)

    @property
    def tables(self) -> Tables:
        """The staged copy this unit of work changes."""
        assert self._staged is not None, "use the unit of work in 'async with'"
        return self._staged

    async def __aenter__(self) -> Self:
        self._staged = self._db.committed.copy()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._staged = None  # whatever was not committed is rolled back

    async def commit(self) -> None:
        assert self._staged is not None, "commit() outside 'async with'"
        self._db.committed = self._staged.copy()
        self._db.commits += 1
