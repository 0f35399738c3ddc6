"""The Stripe horizon on a real PostgreSQL: migration 0006, the charge store's new phase
'needs_review' and columns, the gauges, and settling a charge by hand (charge_admin).

The charger runs on a fake clock (every instant from T0), and which rows are due is judged on
that clock too, so "time passes" by advancing the clock, and a row is made due at once by moving
its next_attempt_at before the clock's time with an UPDATE.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from service.adapters.postgres import charge_admin
from service.adapters.postgres.charges import PgChargeStore
from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.contract.codec import output_event_id
from service.domain.model import Card, TopUp, Wallet
from service.service_layer.charger import Charger
from service.service_layer.payments import ChargeResult, ChargeStatus
from service.service_layer.ports import Claim
from tests.charge_fakes import DAY, T0, FakeClock, ScriptedGateway, server_error, stripe_topup
from tests.pg_tools import PG_CONNECT_SECONDS

TOPICS = Topics()
HORIZON = timedelta(hours=24)


async def claim(pool: asyncpg.Pool, topup: TopUp) -> None:
    async with PgUnitOfWork(pool) as uow:
        taken = await uow.store.claim_daily_keys(
            [Claim(topup, "claimed", next_attempt_at=T0 - timedelta(minutes=1))]
        )
        await uow.commit()
    assert taken == {(topup.customer_id, topup.business_date)}


async def make_due(pool: asyncpg.Pool, topup: TopUp, clock: FakeClock) -> None:
    """The retry time (or the lease) runs out: due by the charger's clock."""
    status = await pool.execute(
        "UPDATE daily_keys SET next_attempt_at = $3::timestamptz - interval '1 second',"
        " leased_until = NULL"
        " WHERE customer_id = $1 AND business_date = $2",
        topup.customer_id,
        topup.business_date,
        clock(),
    )
    assert status == "UPDATE 1"


async def row_of(pool: asyncpg.Pool, topup: TopUp) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM daily_keys WHERE customer_id = $1 AND business_date = $2",
        topup.customer_id,
        topup.business_date,
    )
    assert row is not None
    return row


async def outbox(pool: asyncpg.Pool) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch("SELECT topic, value, dedupe_key FROM outbox ORDER BY id")
    out = []
    for r in rows:
        event = json.loads(r["value"])
        assert r["dedupe_key"] == event["event_id"]
        out.append((r["topic"], event))
    return out


def charger(pool: asyncpg.Pool, gateway: ScriptedGateway, clock: FakeClock) -> Charger:
    return Charger(
        PgChargeStore(pool),
        gateway,
        clock,
        TOPICS,
        lease_seconds=60.0,
        lookup_after=timedelta(hours=23),
        key_horizon=HORIZON,
        search_settle=timedelta(minutes=5),
    )


async def in_review(pool: asyncpg.Pool, topup: TopUp, clock: FakeClock) -> None:
    """Drives one charge to 'needs_review' through the charger: a 500 at T0, nothing found
    at Stripe once the horizon has passed."""
    await claim(pool, topup)
    gateway = ScriptedGateway(clock, charges=[server_error()], finds=[[]])
    assert await charger(pool, gateway, clock).run_once() == 1
    clock.advance(HORIZON + timedelta(minutes=6))
    await make_due(pool, topup, clock)
    assert await charger(pool, gateway, clock).run_once() == 1
    assert gateway.kinds() == ["charge", "find"]
    clock.now = T0


# --- the store ----------------------------------------------------------------------------


async def test_the_first_attempt_time_is_the_chargers_clock_and_is_kept(
    pool: asyncpg.Pool,
) -> None:
    topup = stripe_topup()
    await claim(pool, topup)
    clock = FakeClock(T0)
    gateway = ScriptedGateway(
        clock, charges=[server_error()], finds=[[]], then_charge=server_error()
    )

    assert await charger(pool, gateway, clock).run_once() == 1
    row = await row_of(pool, topup)
    assert (row["phase"], row["attempts"], row["first_attempt_at"]) == ("charging", 1, T0)
    assert row["looked_up_at"] is None

    clock.advance(timedelta(minutes=7))
    await make_due(pool, topup, clock)
    assert await charger(pool, gateway, clock).run_once() == 1

    row = await row_of(pool, topup)
    assert (row["attempts"], row["first_attempt_at"]) == (2, T0)  # not moved by a retry
    assert row["looked_up_at"] == T0 + timedelta(minutes=7)
    assert gateway.kinds() == ["charge", "find", "charge"]


async def test_past_the_horizon_the_row_goes_to_needs_review_and_is_never_leased(
    pool: asyncpg.Pool,
) -> None:
    topup = stripe_topup()
    clock = FakeClock(T0)
    await in_review(pool, topup, clock)

    row = await row_of(pool, topup)
    assert (row["phase"], row["result"], row["next_attempt_at"]) == ("needs_review", None, None)
    assert row["looked_up_at"] == T0 + HORIZON + timedelta(minutes=6)
    assert "horizon" in row["detail"]
    assert await outbox(pool) == []
    # Even due by its old retry time, a row in review is not the charger's any more.
    await make_due(pool, topup, clock)
    idle = ScriptedGateway(clock)
    assert await charger(pool, idle, clock).run_once() == 0
    assert idle.calls == []


async def test_the_phase_check_knows_needs_review_and_nothing_else(pool: asyncpg.Pool) -> None:
    topup = stripe_topup()
    await claim(pool, topup)
    await pool.execute("UPDATE daily_keys SET phase = 'needs_review'")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE daily_keys SET phase = 'reviewing'")


async def test_gauges_and_list_show_what_is_not_settled(pool: asyncpg.Pool) -> None:
    clock = FakeClock(T0)
    review, waiting, done = (stripe_topup(f"cust-{n}") for n in ("r", "w", "d"))
    assert await charge_admin.charge_gauges(pool) == charge_admin.ChargeGauges(0, None)
    await in_review(pool, review, clock)
    await claim(pool, waiting)
    await claim(pool, done)
    settle = ScriptedGateway(clock, charges=[ChargeResult(ChargeStatus.SUCCEEDED, "pi_d")])
    await pool.execute(
        "UPDATE daily_keys SET next_attempt_at = now() + interval '1 hour'"
        " WHERE customer_id = 'cust-w'"
    )
    assert await charger(pool, settle, clock).run_once() == 1  # cust-d only

    gauges = await charge_admin.charge_gauges(pool)
    waiting_row = await row_of(pool, waiting)
    assert gauges == charge_admin.ChargeGauges(1, waiting_row["created_at"])
    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        listed = await charge_admin.open_charges(conn, 10)
    assert [(c.daily_key, c.phase) for c in listed] == [
        ("cust-r/2026-11-25", "needs_review"),
        ("cust-w/2026-11-25", "claimed"),
    ]
    assert str(listed[0].amount) == "100.00"
    assert listed[0].first_attempt_at == T0


# --- settling by hand ---------------------------------------------------------------------


async def test_resolve_succeeded_queues_credit_issued_once_and_audits(pool: asyncpg.Pool) -> None:
    topup = stripe_topup()
    clock = FakeClock(T0)
    await in_review(pool, topup, clock)
    at = T0 + timedelta(days=1, hours=2)

    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        done = await charge_admin.resolve(
            conn,
            topup.customer_id,
            DAY,
            ChargeResult(ChargeStatus.SUCCEEDED, "pi_seen_in_dashboard"),
            by="alice",
            why="dashboard: pi_seen_in_dashboard succeeded, metadata daily_key matches",
            now=at,
            topics=TOPICS,
        )

    credit_id = output_event_id(topup.customer_id, DAY, "credit-issued")
    assert (done.old_phase, done.result, done.event_id) == (
        "needs_review",
        "credit_issued",
        credit_id,
    )
    row = await row_of(pool, topup)
    assert (row["phase"], row["result"], row["stripe_payment_intent_id"]) == (
        "done",
        "credit_issued",
        "pi_seen_in_dashboard",
    )
    [(topic, event)] = await outbox(pool)
    assert topic == TOPICS.credit_issued
    assert event["event_id"] == credit_id
    assert event["funding_source"] == "stripe"
    assert event["stripe_payment_intent_id"] == "pi_seen_in_dashboard"
    assert event["idempotency_key"] == "cust-1/2026-11-25"
    assert datetime.fromisoformat(event["emitted_at"]) == at
    [audit] = await pool.fetch("SELECT * FROM charge_audit")
    assert dict(audit) | {"id": 0} == {
        "id": 0,
        "customer_id": "cust-1",
        "business_date": DAY,
        "daily_key": "cust-1/2026-11-25",
        "old_phase": "needs_review",
        "decision": "succeeded",
        "reason": None,
        "payment_intent_id": "pi_seen_in_dashboard",
        "event_id": credit_id,
        "resolved_by": "alice",
        "why": "dashboard: pi_seen_in_dashboard succeeded, metadata daily_key matches",
        "resolved_at": at,
    }

    # Once settled, it is settled: a second resolution is refused and publishes nothing.
    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        with pytest.raises(charge_admin.ChargeNotResolvable) as again:
            await charge_admin.resolve(
                conn,
                topup.customer_id,
                DAY,
                ChargeResult(ChargeStatus.FAILED, None, "x", "y"),
                by="bob",
                why="second try",
                now=at,
                topics=TOPICS,
            )
    assert again.value.phase == "done"
    assert len(await outbox(pool)) == 1
    assert await pool.fetchval("SELECT count(*) FROM charge_audit") == 1


async def test_resolve_failed_queues_top_up_failed_and_does_not_pause(pool: asyncpg.Pool) -> None:
    topup = stripe_topup(card=Card("cus_1", "pm_1"))
    async with PgUnitOfWork(pool) as uow:
        await uow.store.lock_wallets([topup.customer_id], DAY)
        await uow.store.save_wallets([Wallet(topup.customer_id, card=Card("cus_1", "pm_1"))])
        await uow.commit()
    clock = FakeClock(T0)
    await in_review(pool, topup, clock)

    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        done = await charge_admin.resolve(
            conn,
            topup.customer_id,
            DAY,
            ChargeResult(
                ChargeStatus.FAILED, None, "stripe_charge_unresolved", "settled by an operator"
            ),
            by="alice",
            why="nothing at Stripe for this daily key",
            now=T0 + timedelta(days=2),
            topics=TOPICS,
        )

    assert (done.result, done.reason) == ("failed", "stripe_charge_unresolved")
    [(topic, event)] = await outbox(pool)
    assert topic == TOPICS.top_up_failed
    assert event["event_id"] == output_event_id(topup.customer_id, DAY, "top-up-failed")
    assert (event["reason"], event["detail"]) == (
        "stripe_charge_unresolved",
        "settled by an operator",
    )
    row = await row_of(pool, topup)
    assert (row["phase"], row["result"], row["reason"]) == (
        "done",
        "failed",
        "stripe_charge_unresolved",
    )
    assert await pool.fetchval("SELECT stripe_paused FROM wallets") is False
    assert await pool.fetchval("SELECT decision FROM charge_audit") == "failed"


async def test_only_a_charge_in_review_can_be_resolved(pool: asyncpg.Pool) -> None:
    topup = stripe_topup()
    await claim(pool, topup)
    decision = ChargeResult(ChargeStatus.SUCCEEDED, "pi_1")
    async with pool.acquire(timeout=PG_CONNECT_SECONDS) as conn:
        with pytest.raises(charge_admin.ChargeNotResolvable) as busy:
            await charge_admin.resolve(
                conn, "cust-1", DAY, decision, by="a", why="b", now=T0, topics=TOPICS
            )
        assert busy.value.phase == "claimed"
        with pytest.raises(charge_admin.ChargeNotFound):
            await charge_admin.resolve(
                conn, "nobody", DAY, decision, by="a", why="b", now=T0, topics=TOPICS
            )
    assert await outbox(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM charge_audit") == 0
