"""The batch store and handler against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import asyncpg

from service.adapters.postgres.migrate import migrate
from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.model import PaymentMethod, TopUp, Wallet
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import Claim, CountKey, InputRecord
from tests.factories import NOW, balance_wire, dumps, full_wallet, settings_wire
from tests.pg_tools import connect

TOPICS = Topics()
STALE_BALANCE = CountKey.consumed(TOPICS.wallet_balance_changed, "stale")


def _topup(customer_id: str = "cust-1", day: date = date(2026, 11, 25)) -> TopUp:
    return TopUp(
        customer_id,
        day,
        "e1",
        Decimal("1"),
        Decimal("10"),
        Decimal("100"),
        "USD",
        PaymentMethod.CHEQUE_TT,
    )


async def test_migrations_are_recorded_and_idempotent(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        assert await migrate(conn) == []  # the template already applied them
        versions = await conn.fetchval("SELECT array_agg(version) FROM schema_migrations")
        assert "0001_initial" in versions
    finally:
        await conn.close()


async def test_wallets_round_trip(pool: asyncpg.Pool) -> None:
    wallet = full_wallet()
    async with PgUnitOfWork(pool) as uow:
        loaded = await uow.store.lock_wallets(["cust-1"], NOW.date())
        assert loaded == {"cust-1": Wallet("cust-1")}
        await uow.store.save_wallets([wallet])
        await uow.commit()
    async with PgUnitOfWork(pool) as uow:
        again = await uow.store.lock_wallets(["cust-1"], NOW.date())
    assert again["cust-1"] == wallet


async def test_two_concurrent_claims_of_one_daily_key_one_wins(pool: asyncpg.Pool) -> None:
    start = asyncio.Event()

    async def claim() -> set[tuple[str, date]]:
        async with PgUnitOfWork(pool) as uow:
            await start.wait()
            won = await uow.store.claim_daily_keys([Claim(_topup(), "done", "invoice_requested")])
            await uow.commit()
            return won

    tasks = [asyncio.create_task(claim()) for _ in range(2)]
    await asyncio.sleep(0)  # both transactions are open before either claims
    start.set()
    results = await asyncio.gather(*tasks)
    assert sorted(len(r) for r in results) == [0, 1]
    assert await pool.fetchval("SELECT count(*) FROM daily_keys") == 1


def _records(*bodies: tuple[str, dict[str, object]]) -> list[InputRecord]:
    return [
        InputRecord(topic, 0, i, str(body["customer_id"]).encode(), dumps(body))
        for i, (topic, body) in enumerate(bodies)
    ]


async def test_concurrent_instances_publish_one_decision(pool: asyncpg.Pool) -> None:
    """Two handlers (as two instances would) apply the same due events at once."""
    handler = BatchHandler(lambda: PgUnitOfWork(pool), lambda: NOW, Policy(), TOPICS)
    at = NOW - timedelta(seconds=10)
    setup = _records((TOPICS.settings_updated, settings_wire("cust-1", at=at)))
    await handler.handle(setup)
    # The same event four times (redelivered), and four different due events at once.
    same = _records((TOPICS.wallet_balance_changed, balance_wire("cust-1", "5.00", at=NOW)))
    reports = await asyncio.gather(*(handler.handle(same) for _ in range(4)))
    assert sum(r.counts[CountKey.decision("triggered")] for r in reports) == 1
    assert sum(r.counts[STALE_BALANCE] for r in reports) == 3
    later = NOW + timedelta(seconds=1)  # newer than the event above, so at least one applies
    different = [
        _records((TOPICS.wallet_balance_changed, balance_wire("cust-1", f"{i}.00", at=later)))
        for i in range(4)
    ]
    reports = await asyncio.gather(*(handler.handle(batch) for batch in different))
    assert sum(r.counts[CountKey.decision("triggered")] for r in reports) == 0
    # Events at one instant are ordered by event_id: whichever order the transactions take,
    # each is either suppressed (the day is taken) or stale, and none is published.
    suppressed = sum(r.counts[CountKey.decision("suppressed")] for r in reports)
    stale = sum(r.counts[STALE_BALANCE] for r in reports)
    assert suppressed >= 1
    assert suppressed + stale == 4
    rows = await pool.fetch("SELECT topic FROM outbox")
    assert [r["topic"] for r in rows] == [TOPICS.invoice_requested]


async def test_redelivered_batch_changes_nothing(pool: asyncpg.Pool) -> None:
    handler = BatchHandler(lambda: PgUnitOfWork(pool), lambda: NOW, Policy(), TOPICS)
    batch = _records(
        (TOPICS.settings_updated, settings_wire("cust-1", at=NOW - timedelta(seconds=5))),
        (TOPICS.wallet_balance_changed, balance_wire("cust-1", "5.00", at=NOW, sequence=1)),
        (TOPICS.wallet_balance_changed, {"customer_id": "cust-1", "junk": True}),
    )
    await handler.handle(batch)
    before = await pool.fetch("SELECT dedupe_key, value FROM outbox ORDER BY id")
    wallets = await pool.fetch("SELECT * FROM wallets ORDER BY customer_id")
    report = await handler.handle(batch)
    assert report.counts[CountKey.decision("triggered")] == 0
    assert await pool.fetch("SELECT dedupe_key, value FROM outbox ORDER BY id") == before
    assert len(before) == 2  # one invoice, one dead letter
    after = await pool.fetch("SELECT * FROM wallets ORDER BY customer_id")
    assert [dict(r) | {"updated_at": None} for r in after] == [
        dict(r) | {"updated_at": None} for r in wallets
    ]
