"""A settings event the rules rejected stays rejected when it comes again (a crash before the
offset commit, a rebalance, a producer's retry at another offset, a replay after its dead letter
was pruned), even if records after it (a card saved by an online top-up dated earlier) would let
it apply now: a redelivery never changes money. An operator's redrive is judged afresh."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import REDRIVE_HEADER, CountKey, InputRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire

TOPICS = Topics()
CUSTOMER = "cust-redelivered"


def _record(offset: int, topic: str, body: dict[str, object]) -> InputRecord:
    return InputRecord(topic, 0, offset, CUSTOMER.encode(), dumps(body))


async def _rejected_then_card_saved(
    handler: BatchHandler,
) -> tuple[dict[str, object], InputRecord]:
    """The Finance app chooses Stripe before any card is saved (dead-lettered); the customer's
    online top-up, dated earlier, arrives after it with the same amounts and auto off."""
    at = NOW - timedelta(minutes=10)
    finance = settings_wire(CUSTOMER, method="stripe", threshold="50.00", at=at)
    online = settings_wire(
        CUSTOMER,
        method="stripe",
        origin="online_top_up",
        threshold="50.00",
        auto=False,
        at=at - timedelta(minutes=1),
        stripe_customer_id="cus_1",
        stripe_payment_method_id="pm_1",
    )
    first = await handler.handle(
        [_record(0, TOPICS.settings_updated, finance), _record(1, TOPICS.settings_updated, online)]
    )
    assert first.counts[CountKey.dead_letter("stripe_card_missing")] == 1
    return finance, _record(0, TOPICS.settings_updated, finance)


async def _claims_after_a_low_balance(handler: BatchHandler, pool: asyncpg.Pool) -> int:
    low = _record(9, TOPICS.wallet_balance_changed, balance_wire(CUSTOMER, "5.00", at=NOW))
    await handler.handle([low])
    return int(await pool.fetchval("SELECT count(*) FROM daily_keys"))


@pytest.mark.parametrize("how", ["same offset", "another offset", "dead letter pruned"])
async def test_a_rejected_settings_event_stays_rejected(pool: asyncpg.Pool, how: str) -> None:
    handler = BatchHandler(lambda: PgUnitOfWork(pool), lambda: NOW, Policy(), TOPICS)
    finance, record = await _rejected_then_card_saved(handler)
    if how == "another offset":
        record = _record(5, TOPICS.settings_updated, finance)
    if how == "dead letter pruned":
        await pool.execute("DELETE FROM outbox")

    again = await handler.handle([record])

    assert [e.reason for e in again.log] == ["redelivered_dead_letter"]
    assert await _claims_after_a_low_balance(handler, pool) == 0


async def test_a_redriven_settings_event_is_judged_afresh_once(pool: asyncpg.Pool) -> None:
    handler = BatchHandler(lambda: PgUnitOfWork(pool), lambda: NOW, Policy(), TOPICS)
    finance, _ = await _rejected_then_card_saved(handler)
    redriven = replace(
        _record(7, TOPICS.settings_updated, finance), headers=((REDRIVE_HEADER, b"r-1"),)
    )

    applied = await handler.handle([redriven])

    assert applied.counts[CountKey.consumed(TOPICS.settings_updated, "applied")] == 1
    assert await _claims_after_a_low_balance(handler, pool) == 1
