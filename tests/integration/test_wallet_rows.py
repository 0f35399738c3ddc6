"""A wallet is read and written by column name: the names `wallet_rows` uses are exactly the
database's, in both directions (no column left unmapped, no mapped name the database lacks).
The driver places a mapping by attribute name and leaves a missing one NULL, and a row is
read by name: a name that drifts from the schema must fail here, not in production."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.adapters.postgres.sql import q
from service.adapters.postgres.store import PgUnitOfWork
from service.adapters.postgres.wallet_rows import wallet_from_row, wallet_to_state
from service.domain.model import Wallet
from tests.factories import NOW, full_wallet

ATTRIBUTES = """
SELECT a.attname FROM pg_type AS t JOIN pg_attribute AS a ON a.attrelid = t.typrelid
WHERE t.typname = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


class Reading:
    """A row that notes every column name read from it."""

    def __init__(self, row: asyncpg.Record) -> None:
        self.row = row
        self.read: set[str] = set()

    def __getitem__(self, key: str, /) -> Any:
        self.read.add(key)
        return self.row[key]


def _differ(mapped: set[str], database: set[str]) -> str:
    return (
        f"mapped but not in the database: {sorted(mapped - database)}; "
        f"in the database but not mapped: {sorted(database - mapped)}"
    )


async def _saved(pool: asyncpg.Pool, wallet: Wallet) -> None:
    async with PgUnitOfWork(pool) as uow:
        await uow.store.lock_wallets([wallet.customer_id], NOW.date())
        await uow.store.save_wallets([wallet])
        await uow.commit()


async def test_a_wallet_state_names_every_attribute_of_the_type_and_no_other(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        database = {r["attname"] for r in await conn.fetch(ATTRIBUTES, "wallet_state")}
    assert "customer_id" in database  # the type was found
    for wallet in (full_wallet(), Wallet("cust-empty")):
        mapped = set(wallet_to_state(wallet))
        assert mapped == database, _differ(mapped, database)


async def test_a_wallet_is_read_from_every_column_lock_wallets_selects_and_no_other(
    pool: asyncpg.Pool,
) -> None:
    wallet = full_wallet()  # every field set: every column is read
    await _saved(pool, wallet)
    async with pool.acquire() as conn, conn.transaction():
        statement = await conn.prepare(q("lock_wallets"))
        selected = {a.name for a in statement.get_attributes()}
        [row] = await statement.fetch([wallet.customer_id], NOW.date(), False)
    reading = Reading(row)
    assert wallet_from_row(reading, frozenset(row["taken_dates"])) == wallet
    mapped = reading.read | {"taken_dates"}  # the dates go in as an argument
    assert mapped == selected, _differ(mapped, selected)


async def test_the_other_wallet_queries_select_what_the_mapping_reads(pool: asyncpg.Pool) -> None:
    """`read_wallets` (a dry-run replay) and `explain_wallet` select every wallet column: the
    mapping reads a subset of theirs."""
    wallet = full_wallet()
    await _saved(pool, wallet)
    async with pool.acquire() as conn:
        read_wallets = await conn.fetchrow(q("read_wallets"), [wallet.customer_id], NOW.date())
        explained = await conn.fetchrow(q("explain_wallet"), wallet.customer_id)
    assert read_wallets is not None
    assert explained is not None
    for row, dates in ((read_wallets, frozenset(read_wallets["taken_dates"])), (explained, None)):
        reading = Reading(row)
        assert wallet_from_row(reading, dates or frozenset()) == wallet
        assert reading.read <= set(row.keys()), _differ(reading.read, set(row.keys()))
