"""The unit of work and batch store on asyncpg."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.adapters.postgres.sql import q
from service.domain.model import (
    Balance,
    Card,
    CardTerms,
    Credit,
    Origin,
    PaymentMethod,
    Settings,
    Wallet,
)
from service.service_layer.ports import Claim, DecisionLog, OutboxRecord, merge_decisions

Connection = asyncpg.Connection | PoolConnectionProxy


def _newest(at: datetime | None, event_id: str) -> tuple[datetime, str] | None:
    return None if at is None else (at, event_id)


def _money(value: Decimal | str) -> Decimal:
    """numeric columns: the lock query sends them as text (decoded faster, exactly)."""
    return value if isinstance(value, Decimal) else Decimal(value)


def card_from_row(row: asyncpg.Record) -> Card | None:
    """The saved card of a wallet or a daily key row (same column names)."""
    if row["stripe_customer_id"] is None:
        return None
    return Card(row["stripe_customer_id"], row["stripe_payment_method_id"])


def _credits(raw: str) -> tuple[Credit, ...]:
    if raw == "[]":  # nearly every wallet: not a partner, or nothing outstanding
        return ()
    return tuple(
        Credit(datetime.fromisoformat(c["at"]), Decimal(c["amount"]), c.get("id"))
        for c in json.loads(raw)
    )


def _credits_json(credits: tuple[Credit, ...]) -> str:
    return json.dumps(
        [
            {"at": c.issued_at.isoformat(), "amount": str(c.amount), "id": c.event_id}
            for c in credits
        ]
    )


def _card_terms(raw: str | None) -> CardTerms | None:
    if raw is None:
        return None
    t = json.loads(raw)
    newest = (datetime.fromisoformat(t["at"]), t["event_id"]) if t.get("at") else None
    return CardTerms(
        Decimal(t["trigger_amount"]), Decimal(t["limit_threshold"]), t["currency"], newest
    )


def _card_terms_json(terms: CardTerms | None) -> str | None:
    if terms is None:
        return None
    return json.dumps(
        {
            "trigger_amount": str(terms.trigger_amount),
            "limit_threshold": str(terms.limit_threshold),
            "currency": terms.currency,
            "at": terms.newest[0].isoformat() if terms.newest else None,
            "event_id": terms.newest[1] if terms.newest else None,
        }
    )


def wallet_from_row(row: asyncpg.Record, attempt_dates: frozenset[date]) -> Wallet:
    settings = None
    if row["payment_method"] is not None:
        settings = Settings(
            payment_method=PaymentMethod(row["payment_method"]),
            auto_trigger=row["auto_trigger"],
            trigger_amount=_money(row["trigger_amount"]),
            limit_threshold=_money(row["limit_threshold"]),
            currency=row["settings_currency"],
            timezone=row["timezone"],
            partner_id=row["partner_id"],
            origin=Origin(row["settings_origin"]),
            version=row["settings_version"],
            occurred_at=row["settings_occurred_at"],
            event_id=row["settings_event_id"],
            newest=_newest(row["settings_newest_at"], row["settings_newest_id"]),
        )
    card = card_from_row(row)
    balance = None
    if row["balance"] is not None:
        balance = Balance(
            _money(row["balance"]),
            row["balance_currency"],
            row["balance_occurred_at"],
            row["balance_sequence"],
            row["balance_event_id"],
            _newest(row["balance_newest_at"], row["balance_newest_id"]),
        )
    return Wallet(
        row["customer_id"],
        settings,
        card,
        row["stripe_paused"],
        balance,
        _credits(row["credits_out"]),
        attempt_dates,
        _card_terms(row["card_terms"]),
        row["attempt_day_end"],
    )


def _only_balance_changed(before: Wallet, after: Wallet) -> bool:
    return (
        after.balance is not None
        and after.settings is before.settings
        and after.card is before.card
        and after.stripe_paused == before.stripe_paused
        and after.credits_out == before.credits_out
        and after.card_terms is before.card_terms
        and after.attempt_day_end == before.attempt_day_end
    )


def wallet_to_state(w: Wallet) -> tuple[Any, ...]:
    s, b, c = w.settings, w.balance, w.card
    credits = _credits_json(w.credits_out)
    return (
        w.customer_id,
        s.payment_method.value if s else None,
        s.auto_trigger if s else None,
        s.trigger_amount if s else None,
        s.limit_threshold if s else None,
        s.currency if s else None,
        s.timezone if s else None,
        s.partner_id if s else None,
        s.origin.value if s else None,
        s.version if s else None,
        s.occurred_at if s else None,
        s.event_id if s else None,
        c.stripe_customer_id if c else None,
        c.stripe_payment_method_id if c else None,
        w.stripe_paused,
        b.amount if b else None,
        b.currency if b else None,
        b.occurred_at if b else None,
        b.sequence if b else None,
        b.event_id if b else None,
        credits,
        b.newest[0] if b and b.newest else None,
        b.newest[1] if b and b.newest else None,
        s.newest[0] if s and s.newest else None,
        s.newest[1] if s and s.newest else None,
        _card_terms_json(w.card_terms),
        w.attempt_day_end,
    )


class PgBatchStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._loaded: dict[str, Wallet] = {}  # as locked, to write back only what changed

    async def lock_wallets(self, customer_ids: Collection[str], since: date) -> dict[str, Wallet]:
        ids = sorted(customer_ids)
        wallets = self._from_rows(await self._conn.fetch(q("lock_wallets"), ids, since))
        missing = [i for i in ids if i not in wallets]
        if missing:
            created = {r[0] for r in await self._conn.fetch(q("create_wallets"), missing)}
            wallets.update((i, Wallet(i)) for i in created)
            raced = [i for i in missing if i not in created]
            if raced:
                wallets.update(
                    self._from_rows(await self._conn.fetch(q("lock_wallets"), raced, since))
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
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
        ids, amounts, currencies, ats, sequences, event_ids, newest_ats, newest_ids = columns
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
        await self._conn.execute(q("save_balances"), *columns)

    async def claim_daily_keys(self, claims: Sequence[Claim]) -> set[tuple[str, date]]:
        columns: list[list[Any]] = [[] for _ in range(17)]
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

    async def dead_lettered(self, dedupe_keys: Sequence[str]) -> set[str]:
        rows = await self._conn.fetch(q("dead_lettered"), list(dedupe_keys))
        return {r["dedupe_key"] for r in rows}

    async def record_decisions(self, entries: Sequence[DecisionLog], at: datetime) -> None:
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
