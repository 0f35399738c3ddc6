"""The unit of work and batch store on asyncpg."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import date, datetime
from types import TracebackType
from typing import Any, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.adapters.postgres.history import add_history
from service.adapters.postgres.invoices import PgInvoiceStore
from service.adapters.postgres.sql import q
from service.adapters.postgres.wallet_rows import card_from_row as card_from_row
from service.adapters.postgres.wallet_rows import usage_bytes
from service.adapters.postgres.wallet_rows import wallet_from_row as wallet_from_row
from service.adapters.postgres.wallet_rows import wallet_to_state as wallet_to_state
from service.domain.model import Wallet
from service.service_layer.history import history_entries
from service.service_layer.ports import (
    Claim,
    DecisionLog,
    OutboxRecord,
    SettingsKey,
    merge_decisions,
)

Connection = asyncpg.Connection | PoolConnectionProxy


def _only_balance_changed(before: Wallet, after: Wallet) -> bool:
    return (
        after.balance is not None
        and after.settings is before.settings
        and after.card is before.card
        and after.stripe_paused == before.stripe_paused
        and after.credits_out == before.credits_out
        and after.card_terms is before.card_terms
        and after.attempt_day_end == before.attempt_day_end
        and after.month is before.month
        and after.advised_on == before.advised_on
    )


class PgBatchStore(PgInvoiceStore):
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._loaded: dict[str, Wallet] = {}  # as locked, to write back only what changed

    async def lock_wallets(
        self, customer_ids: Collection[str], since: date, partners: bool = False
    ) -> dict[str, Wallet]:
        ids = sorted(customer_ids)
        rows = await self._conn.fetch(q("lock_wallets"), ids, since, partners)
        wallets = self._from_rows(rows)
        missing = [i for i in ids if i not in wallets]
        if missing:
            rows = await self._conn.fetch(q("create_wallets"), missing)
            created = {r["customer_id"] for r in rows}
            wallets.update((i, Wallet(i)) for i in created)
            raced = [i for i in missing if i not in created]
            if raced:
                wallets.update(
                    self._from_rows(await self._conn.fetch(q("lock_wallets"), raced, since, False))
                )
        self._loaded.update(wallets)
        return wallets

    @staticmethod
    def _from_rows(rows: Sequence[asyncpg.Record]) -> dict[str, Wallet]:
        return {r["customer_id"]: wallet_from_row(r, frozenset(r["taken_dates"])) for r in rows}

    async def save_wallets(self, wallets: Sequence[Wallet]) -> None:
        full: list[Wallet] = []
        balances: list[Wallet] = []
        for w in wallets:
            before = self._loaded.get(w.customer_id)
            (balances if before and _only_balance_changed(before, w) else full).append(w)
        if balances:
            await self._save_balances(balances)
        if full:
            await self._conn.execute(q("save_wallets"), [wallet_to_state(w) for w in full])

    async def _save_balances(self, wallets: Sequence[Wallet]) -> None:
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [])
        ids, amounts, currencies, ats, sequences, event_ids, newest_ats, newest_ids, usages = (
            columns
        )
        for w in wallets:
            b = w.balance
            assert b is not None
            ids.append(w.customer_id)
            amounts.append(str(b.amount))
            currencies.append(b.currency)
            ats.append(b.occurred_at)
            sequences.append(b.sequence)
            event_ids.append(b.event_id)
            newest_ats.append(b.newest[0] if b.newest else None)
            newest_ids.append(b.newest[1] if b.newest else None)
            usages.append(usage_bytes(w.usage))
        await self._conn.execute(q("save_balances"), *columns)

    async def claim_daily_keys(self, claims: Sequence[Claim]) -> set[tuple[str, date]]:
        columns: list[list[Any]] = [[] for _ in range(19)]
        for c in claims:
            t = c.topup
            values = (
                t.customer_id,
                t.business_date,
                t.payment_method.value,
                t.amount,
                t.currency,
                t.trigger_event_id,
                t.balance_at_trigger,
                t.limit_threshold,
                t.partner_id,
                t.card.stripe_customer_id if t.card else None,
                t.card.stripe_payment_method_id if t.card else None,
                c.phase,
                c.result,
                c.reason,
                c.detail,
                c.next_attempt_at,
                json.dumps(list(c.trace_headers)),
                t.amount_mode.value,
                t.fallback_method.value if t.fallback_method else None,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        rows = await self._conn.fetch(q("insert_daily_keys"), *columns)
        return {(r["customer_id"], r["business_date"]) for r in rows}

    async def add_outbox(self, records: Sequence[OutboxRecord]) -> None:
        await self._conn.execute(
            q("insert_outbox"),
            [r.dedupe_key for r in records],
            [r.topic for r in records],
            [r.key for r in records],
            [r.value for r in records],
            [json.dumps(list(r.headers)) for r in records],
        )

    async def rejected_settings(self, keys: Sequence[SettingsKey]) -> set[SettingsKey]:
        rows = await self._conn.fetch(
            q("rejected_settings"),
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(r["customer_id"], r["event_id"], r["redrive"]) for r in rows}

    async def add_rejected_settings(
        self, rejected: Sequence[tuple[SettingsKey, str]], at: datetime
    ) -> None:
        await self._conn.execute(
            q("insert_rejected_settings"),
            [k[0] for k, _ in rejected],
            [k[1] for k, _ in rejected],
            [k[2] for k, _ in rejected],
            [reason for _, reason in rejected],
            at,
        )

    async def record_decisions(self, entries: Sequence[DecisionLog], at: datetime) -> None:
        await add_history(self._conn, history_entries(entries, at))  # migration 0013
        rows = merge_decisions(entries)
        if not rows:
            return
        await self._conn.execute(
            q("record_decisions"),
            [k[0] for k, _, _ in rows],
            [k[1] for k, _, _ in rows],
            [k[2] for k, _, _ in rows],
            [at] * len(rows),
            [e.event_id for _, e, _ in rows],
            [e.topic for _, e, _ in rows],
            [e.partition for _, e, _ in rows],
            [e.offset for _, e, _ in rows],
            [e.detail[:1000] for _, e, _ in rows],
            [e.method for _, e, _ in rows],
            [e.business_date for _, e, _ in rows],
            [times for _, _, times in rows],
        )


class PgUnitOfWork:
    """One transaction on a pooled connection; rolled back unless committed."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: PoolConnectionProxy | None = None
        self._store: PgBatchStore | None = None
        self._tx: Any = None
        self._committed = False

    @property
    def store(self) -> PgBatchStore:
        assert self._store is not None, "use the unit of work in 'async with'"
        return self._store

    async def __aenter__(self) -> Self:
        self._conn = await self._pool.acquire()
        self._store = PgBatchStore(self._conn)
        self._tx = self._conn.transaction()
        await self._tx.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed and not self._conn_closed():
                await self._tx.rollback()
        finally:
            conn, self._conn, self._store = self._conn, None, None
            if conn is not None:
                await self._pool.release(conn)

    def _conn_closed(self) -> bool:
        return self._conn is None or self._conn.is_closed()

    async def commit(self) -> None:
        await self._tx.commit()
        self._committed = True
