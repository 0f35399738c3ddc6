"""A settings record dead-lettered when it first came stays dead-lettered when it comes again
(a crash before the offset commit, a rebalance), even if records after it (a card saved by an
online top-up dated earlier) would let it apply now: a redelivery never changes money."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import CountKey, InputRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire

TOPICS = Topics()
CUSTOMER = "cust-redelivered"


def _record(offset: int, topic: str, body: dict[str, object]) -> InputRecord:
    return InputRecord(topic, 0, offset, CUSTOMER.encode(), dumps(body))


async def test_a_dead_letter_stays_one_when_its_record_comes_again(pool: asyncpg.Pool) -> None:
    handler = BatchHandler(lambda: PgUnitOfWork(pool), lambda: NOW, Policy(), TOPICS)
    at = NOW - timedelta(minutes=10)
    # The Finance app chooses Stripe before any card is saved: dead-lettered.
    finance = _record(
        0,
        TOPICS.settings_updated,
        settings_wire(CUSTOMER, method="stripe", threshold="50.00", at=at),
    )
    # The customer's online top-up, dated earlier, arrives after it: same amounts, auto off.
    online = _record(
        1,
        TOPICS.settings_updated,
        settings_wire(
            CUSTOMER,
            method="stripe",
            origin="online_top_up",
            threshold="50.00",
            auto=False,
            at=at - timedelta(minutes=1),
            stripe_customer_id="cus_1",
            stripe_payment_method_id="pm_1",
        ),
    )
    first = await handler.handle([finance, online])
    assert first.counts[CountKey.dead_letter("stripe_card_missing")] == 1

    again = await handler.handle([finance])
    low = _record(2, TOPICS.wallet_balance_changed, balance_wire(CUSTOMER, "5.00", at=NOW))
    after = await handler.handle([low])

    assert [e.reason for e in again.log] == ["redelivered_dead_letter"]
    assert after.counts[CountKey.decision("triggered")] == 0
    assert await pool.fetchval("SELECT count(*) FROM daily_keys") == 0
    dead = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", TOPICS.dead_letter)
    assert dead == 1
