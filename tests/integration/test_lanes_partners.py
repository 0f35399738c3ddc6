"""Two lanes whose customers are paid from each other's partners, applied at once on
PostgreSQL: each locks its customers and their partners in one statement, in one order, so
neither waits for the other in a cycle (no deadlock_detected, nothing retried)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire

TOPICS = Topics()
ROUNDS = 8


def _record(
    topic: str, partition: int, offset: int, key: str, body: dict[str, object]
) -> InputRecord:
    return InputRecord(topic, partition, offset, key.encode(), dumps(body))


async def test_lanes_crossing_partners_never_deadlock(pool: asyncpg.Pool) -> None:
    handler = BatchHandler(lambda: PgUnitOfWork(pool), lambda: NOW, Policy(), TOPICS)
    # P and Q are partners; X (lane 0) is paid from P, Y (lane 1) from Q; each partner's own
    # balance events are in the other lane.
    p, q, x, y = "lp-p", "lp-q", "lp-x", "lp-y"
    at = NOW - timedelta(hours=2)
    setup = [
        _record(TOPICS.settings_updated, 0, n, c, body)
        for n, (c, body) in enumerate(
            [
                (p, settings_wire(p, at=at, trigger="50.00", threshold="-1000.00")),
                (q, settings_wire(q, at=at, trigger="50.00", threshold="-1000.00")),
                (x, settings_wire(x, method="master_account", partner_id=p, at=at)),
                (y, settings_wire(y, method="master_account", partner_id=q, at=at)),
            ]
        )
    ]
    await handler.handle(setup)
    for n in range(ROUNDS):
        when = at + timedelta(minutes=1 + n)
        lane0 = [
            _record(TOPICS.wallet_balance_changed, 0, 2 * n, x, balance_wire(x, "500.00", at=when)),
            _record(
                TOPICS.wallet_balance_changed, 0, 2 * n + 1, q, balance_wire(q, "900.00", at=when)
            ),
        ]
        lane1 = [
            _record(TOPICS.wallet_balance_changed, 1, 2 * n, y, balance_wire(y, "500.00", at=when)),
            _record(
                TOPICS.wallet_balance_changed, 1, 2 * n + 1, p, balance_wire(p, "900.00", at=when)
            ),
        ]
        # Raises DeadlockDetectedError if the two transactions wait for each other.
        await asyncio.gather(handler.handle(lane0), handler.handle(lane1))
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT customer_id, balance::text FROM wallets WHERE customer_id = ANY($1)",
            [p, q, x, y],
        )
    balances = {r["customer_id"]: r["balance"] for r in rows}
    assert balances == {p: "900.00", q: "900.00", x: "500.00", y: "500.00"}
