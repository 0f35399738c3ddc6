"""Read models of the operator commands: plain SELECTs, no lock taken, nothing written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

import asyncpg

from service.adapters.memory import InvoiceLoader, RejectionLoader, WalletLoader
from service.adapters.postgres.invoices import open_invoice_rows
from service.adapters.postgres.migrate import migration_files
from service.adapters.postgres.sql import q
from service.adapters.postgres.store import Connection, wallet_from_row
from service.domain import rules
from service.domain.calendar import business_date
from service.domain.explain import customer_timezone
from service.domain.model import OpenInvoice, Wallet
from service.service_layer.explain_report import (
    DECISION_ROWS,
    RECENT_BUSINESS_DAYS,
    Snapshot,
)
from service.service_layer.ports import InvoiceRow, SettingsKey

QUERY_TIMEOUT_SECONDS = 10.0


class NotMigrated(Exception):
    """The database lacks migrations that a read-only reader cannot apply."""


def wallet_loader(pool: asyncpg.Pool) -> WalletLoader:
    """Reads wallets and their daily keys with plain SELECTs (no lock, no write)."""

    async def load(customer_ids: Sequence[str], since: date) -> dict[str, Wallet]:
        rows = await pool.fetch(q("read_wallets"), list(customer_ids), since)
        return {r["customer_id"]: wallet_from_row(r, frozenset(r["taken_dates"])) for r in rows}

    return load


def rejections_loader(pool: asyncpg.Pool) -> RejectionLoader:
    """Reads which settings events PostgreSQL knows as rejected by the rules (plain SELECT)."""

    async def load(keys: Sequence[SettingsKey]) -> set[SettingsKey]:
        rows = await pool.fetch(
            q("rejected_settings"),
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(r["customer_id"], r["event_id"], r["redrive"]) for r in rows}

    return load


def invoices_loader(pool: asyncpg.Pool) -> InvoiceLoader:
    """Reads the open invoices of customers (plain SELECT)."""

    async def load(customer_ids: Sequence[str]) -> list[InvoiceRow]:
        return await open_invoice_rows(pool, customer_ids)

    return load


async def read_only_pool(dsn: str) -> asyncpg.Pool:
    """A small pool whose transactions PostgreSQL itself refuses to let write; NotMigrated
    when the database lacks migrations (it is not migrated from here)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=2,
        timeout=10,
        server_settings={"default_transaction_read_only": "on"},
    )
    try:
        try:
            done = {r["version"] for r in await pool.fetch(q("applied_migrations"))}
        except asyncpg.UndefinedTableError:
            done = set()
    except BaseException:
        await pool.close()
        raise
    pending = [version for version, _ in migration_files() if version not in done]
    if pending:
        await pool.close()
        raise NotMigrated(
            f"the database lacks migrations {', '.join(pending)}; a dry run does not write: "
            "run `auto-topup migrate` first"
        )
    return pool


async def outbox_backlog(pool: asyncpg.Pool, timeout: float | None = None) -> int:
    """Outbox rows not published yet."""
    return int(await pool.fetchval(q("outbox_backlog"), timeout=timeout))


async def read_snapshot(
    dsn: str, customer_id: str, now: datetime, policy: rules.Policy
) -> Snapshot:
    """What `auto-topup explain` shows of a customer, read in one short read-only REPEATABLE
    READ transaction (one consistent picture, no lock taken)."""
    conn = await asyncpg.connect(dsn, timeout=QUERY_TIMEOUT_SECONDS)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await snapshot_in(conn, customer_id, now, policy)
    finally:
        await conn.close()


async def snapshot_in(
    conn: Connection, customer_id: str, now: datetime, policy: rules.Policy
) -> Snapshot:
    """The reads of `read_snapshot`, in the caller's transaction (the support page's too)."""
    t = QUERY_TIMEOUT_SECONDS
    row = await conn.fetchrow(q("explain_wallet"), customer_id, timeout=t)
    wallet = wallet_from_row(row, frozenset()) if row is not None else None
    timezone = customer_timezone(wallet or Wallet(customer_id), policy)
    today = business_date(now, timezone)
    since = today - timedelta(days=RECENT_BUSINESS_DAYS)
    keys = await conn.fetch(q("explain_daily_keys"), customer_id, since, timeout=t)
    decisions = await conn.fetch(q("explain_decisions"), customer_id, DECISION_ROWS, timeout=t)
    funded = await conn.fetchval(q("explain_funded_customers"), customer_id, timeout=t)
    invoices = await conn.fetch(q("read_open_invoices"), [customer_id], timeout=t)
    if wallet is not None:  # what next_top_up() needs to see (max_open_invoices)
        opened = (OpenInvoice(i["invoice_request_id"], i["business_date"]) for i in invoices)
        wallet = replace(wallet, open_invoices=tuple(opened))
    partner = None
    partner_id = wallet.settings.partner_id if wallet and wallet.settings else None
    if partner_id is not None:
        prow = await conn.fetchrow(q("explain_wallet"), partner_id, timeout=t)
        partner = wallet_from_row(prow, frozenset()) if prow is not None else None
    return Snapshot(
        wallet,
        int(funded or 0),
        partner,
        [dict(k) for k in keys],
        [dict(d) for d in decisions],
        today,
        timezone,
        [dict(i) for i in invoices],
    )
