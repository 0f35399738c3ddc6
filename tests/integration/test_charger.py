"""The Stripe charger against a real PostgreSQL, with an in-memory payment gateway.

A due Stripe top-up is a daily_keys row in phase 'claimed'. These tests check the phases
claimed -> charging -> done, the single outbox row per charge, the same Stripe idempotency key
on every attempt (retries, a worker that died mid-call, racing workers) and the pause of the
failed card. "Time passes" by moving next_attempt_at into the past with an UPDATE.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from service.adapters.postgres.charges import PgChargeStore
from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.model import Card, PaymentMethod, TopUp, Wallet
from service.service_layer.charger import Charger, stripe_idempotency_key
from service.service_layer.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    TransientChargeError,
)
from service.service_layer.ports import Claim

TOPICS = Topics()
DAY = date(2026, 11, 25)
# One charger step against the local database (a few statements) until it reaches the gateway
# or returns: milliseconds; a test that waits this long for one has failed (generous: a slow,
# loaded machine is far inside it).
STEP_SECONDS = 120.0
CARD = Card("cus_test", "pm_old")


def _topup(customer_id: str = "cust-1", card: Card = CARD) -> TopUp:
    return TopUp(
        customer_id=customer_id,
        business_date=DAY,
        trigger_event_id=f"ev-{customer_id}",
        balance_at_trigger=Decimal("5.00"),
        limit_threshold=Decimal("10.00"),
        amount=Decimal("100.00"),
        currency="USD",
        payment_method=PaymentMethod.STRIPE,
        card=card,
    )


# --- the fake gateway ---------------------------------------------------------------------


@dataclass(frozen=True)
class After:
    """Answer `result` once `gate` is set (a gate never set: the call never returns)."""

    gate: asyncio.Event
    result: ChargeResult


Outcome = ChargeResult | Exception | After


class FakeGateway:
    """A PaymentGateway answering with scripted outcomes, one per call; records every call."""

    def __init__(self, *outcomes: Outcome) -> None:
        self._outcomes = list(outcomes)
        self.calls: list[ChargeRequest] = []
        self.retrieved: list[str] = []
        self.searched: list[str] = []
        self.called = asyncio.Event()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.calls.append(request)
        return await self._next()

    async def retrieve(self, payment_intent_id: str) -> ChargeResult:
        self.retrieved.append(payment_intent_id)
        return await self._next()

    async def find(self, daily_key: str) -> list[ChargeResult]:
        """Stripe's search finds nothing (yet): the charger creates under the same key."""
        self.searched.append(daily_key)
        return []

    async def _next(self) -> ChargeResult:
        self.called.set()
        assert self._outcomes, "unexpected gateway call"
        outcome = self._outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, After):
            await outcome.gate.wait()
            return outcome.result
        return outcome


# --- helpers ------------------------------------------------------------------------------


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Until the condition holds (checked every 10 ms), for STEP_SECONDS at most."""
    deadline = asyncio.get_running_loop().time() + STEP_SECONDS
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def now() -> datetime:
    """The charger's fixed clock: a chosen instant, not the host's time (due times and leases
    are on the charger's clock, never on the database's now())."""
    return datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def charger(pool: asyncpg.Pool, gateway: FakeGateway, now: datetime, **kw: Any) -> Charger:
    # A long retry base, so that a postponed charge is surely not due again during the test.
    kw.setdefault("retry_base_seconds", 60.0)
    return Charger(PgChargeStore(pool), gateway, lambda: now, TOPICS, lease_seconds=60.0, **kw)


async def claim(pool: asyncpg.Pool, topup: TopUp, now: datetime) -> None:
    async with PgUnitOfWork(pool) as uow:
        taken = await uow.store.claim_daily_keys(
            [Claim(topup, "claimed", next_attempt_at=now - timedelta(minutes=1))]
        )
        await uow.commit()
    assert taken == {(topup.customer_id, topup.business_date)}


async def daily_key(pool: asyncpg.Pool, topup: TopUp, now: datetime) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT *, next_attempt_at > $3 AS in_future FROM daily_keys"
        " WHERE customer_id = $1 AND business_date = $2",
        topup.customer_id,
        topup.business_date,
        now,
    )
    assert row is not None
    return row


async def make_due(pool: asyncpg.Pool, topup: TopUp, now: datetime) -> None:
    """Time passes: the retry time (or the lease) runs out, on the charger's clock."""
    status = await pool.execute(
        "UPDATE daily_keys SET next_attempt_at = $3::timestamptz - interval '1 second',"
        " leased_until = NULL"
        " WHERE customer_id = $1 AND business_date = $2",
        topup.customer_id,
        topup.business_date,
        now,
    )
    assert status == "UPDATE 1"


async def outbox(pool: asyncpg.Pool) -> list[tuple[str, bytes, dict[str, Any]]]:
    rows = await pool.fetch("SELECT topic, key, value, dedupe_key FROM outbox ORDER BY id")
    out = []
    for r in rows:
        event = json.loads(r["value"])
        assert r["dedupe_key"] == event["event_id"]
        out.append((r["topic"], bytes(r["key"]), event))
    return out


def succeeded(pi_id: str) -> ChargeResult:
    return ChargeResult(ChargeStatus.SUCCEEDED, pi_id)


# --- tests --------------------------------------------------------------------------------


async def test_success_charges_once_and_queues_one_credit_issued(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = _topup()
    await claim(pool, topup, now)
    gateway = FakeGateway(succeeded("pi_1"))

    assert await charger(pool, gateway, now).run_once() == 1

    assert gateway.calls == [
        ChargeRequest(
            idempotency_key="auto-topup:cust-1/2026-11-25",
            amount_minor=10000,
            currency="USD",
            customer="cus_test",
            payment_method="pm_old",
            metadata={"daily_key": "cust-1/2026-11-25", "trigger_event_id": "ev-cust-1"},
        )
    ]
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"], row["reason"]) == ("done", "credit_issued", None)
    assert row["stripe_payment_intent_id"] == "pi_1"
    assert row["next_attempt_at"] is None
    assert row["attempts"] == 1
    [(topic, key, event)] = await outbox(pool)
    assert (topic, key) == (TOPICS.credit_issued, b"cust-1")
    assert event["funding_source"] == "stripe"
    assert event["stripe_payment_intent_id"] == "pi_1"
    assert event["payment_method"] == "stripe"
    assert (event["amount"], event["currency"]) == ("100.00", "USD")
    assert (event["business_date"], event["idempotency_key"]) == ("2026-11-25", "cust-1/2026-11-25")
    assert event["trigger_event_id"] == "ev-cust-1"

    # Done is done: neither this charger nor another one touches it again.
    assert await charger(pool, gateway, now).run_once() == 0
    assert await charger(pool, FakeGateway(), now).run_once() == 0
    assert len(gateway.calls) == 1
    assert len(await outbox(pool)) == 1


async def test_transient_errors_are_retried_with_the_same_idempotency_key(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = _topup()
    await claim(pool, topup, now)
    gateway = FakeGateway(
        TransientChargeError("APIError (503): unavailable"),
        TransientChargeError("APIConnectionError: connection reset"),
        succeeded("pi_2"),
    )
    worker = charger(pool, gateway, now)

    for attempt in (1, 2):
        assert await worker.run_once() == 1
        row = await daily_key(pool, topup, now)
        assert (row["phase"], row["result"]) == ("charging", None)
        assert row["attempts"] == attempt
        assert row["in_future"], "a failed attempt is retried later, not at once"
        assert ("unavailable", "connection reset")[attempt - 1] in row["detail"]
        assert await outbox(pool) == []
        assert await worker.run_once() == 0  # not due before its retry time
        await make_due(pool, topup, now)

    assert await worker.run_once() == 1

    assert len(gateway.calls) == 3
    assert {c.idempotency_key for c in gateway.calls} == {stripe_idempotency_key(topup)}
    # After each unknown outcome, the charge was looked up before the next create.
    assert gateway.searched == [topup.idempotency_key] * 2
    assert gateway.calls[0] == gateway.calls[1] == gateway.calls[2]
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"], row["stripe_payment_intent_id"]) == (
        "done",
        "credit_issued",
        "pi_2",
    )
    assert row["attempts"] == 3
    [(topic, _, event)] = await outbox(pool)
    assert topic == TOPICS.credit_issued
    assert event["stripe_payment_intent_id"] == "pi_2"


async def test_a_worker_dying_mid_call_is_resumed_under_the_same_key(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = _topup()
    await claim(pool, topup, now)
    never = asyncio.Event()
    dying = FakeGateway(After(never, succeeded("pi_lost")))
    task = asyncio.create_task(charger(pool, dying, now).run_once())
    # the request is out; Stripe may or may not have charged
    await asyncio.wait_for(dying.called.wait(), STEP_SECONDS)
    task.cancel()  # the worker dies
    with pytest.raises(asyncio.CancelledError):
        await task

    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["attempts"], row["in_future"]) == ("charging", 1, True)
    completer = FakeGateway(succeeded("pi_3"))
    assert await charger(pool, completer, now).run_once() == 0  # the lease still holds
    await make_due(pool, topup, now)  # the lease runs out

    assert await charger(pool, completer, now).run_once() == 1

    assert completer.calls == dying.calls
    assert completer.calls[0].idempotency_key == stripe_idempotency_key(topup)
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"], row["stripe_payment_intent_id"]) == (
        "done",
        "credit_issued",
        "pi_3",
    )
    assert row["attempts"] == 2
    [(topic, _, event)] = await outbox(pool)
    assert (topic, event["stripe_payment_intent_id"]) == (TOPICS.credit_issued, "pi_3")


async def test_a_late_answer_after_the_completer_finished_changes_nothing(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = _topup()
    async with PgUnitOfWork(pool) as uow:
        await uow.store.lock_wallets(["cust-1"], DAY)
        await uow.store.save_wallets([Wallet("cust-1", card=CARD)])
        await uow.commit()
    await claim(pool, topup, now)
    late = asyncio.Event()
    slow = FakeGateway(After(late, ChargeResult(ChargeStatus.FAILED, None, "card_declined")))
    stale = asyncio.create_task(charger(pool, slow, now).run_once())
    await asyncio.wait_for(slow.called.wait(), STEP_SECONDS)
    await make_due(pool, topup, now)  # its lease runs out while it still waits for Stripe
    completer = FakeGateway(succeeded("pi_7"))
    assert await charger(pool, completer, now).run_once() == 1

    late.set()  # the first worker's answer arrives after all
    assert await asyncio.wait_for(stale, STEP_SECONDS) == 1

    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"], row["reason"]) == ("done", "credit_issued", None)
    assert row["stripe_payment_intent_id"] == "pi_7"
    [(topic, _, event)] = await outbox(pool)
    assert (topic, event["stripe_payment_intent_id"]) == (TOPICS.credit_issued, "pi_7")
    assert await pool.fetchval("SELECT stripe_paused FROM wallets") is False


@pytest.mark.parametrize(
    ("card_on_record", "paused"),
    [
        pytest.param("pm_old", True, id="failed-card-still-on-record"),
        pytest.param("pm_new", False, id="newer-card-on-record"),
    ],
)
async def test_hard_failure_queues_top_up_failed_and_pauses_only_the_failed_card(
    pool: asyncpg.Pool, now: datetime, card_on_record: str, paused: bool
) -> None:
    topup = _topup(card=Card("cus_test", "pm_old"))
    async with PgUnitOfWork(pool) as uow:
        await uow.store.lock_wallets(["cust-1", "cust-2"], DAY)
        await uow.store.save_wallets(
            [
                Wallet("cust-1", card=Card("cus_test", card_on_record)),
                Wallet("cust-2", card=Card("cus_other", "pm_old")),  # another customer
            ]
        )
        await uow.commit()
    await claim(pool, topup, now)
    gateway = FakeGateway(
        ChargeResult(
            ChargeStatus.FAILED,
            "pi_4",
            "card_declined",
            "Your card was declined.",
            card_unusable=True,
        )
    )

    assert await charger(pool, gateway, now).run_once() == 1

    assert len(gateway.calls) == 1
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"], row["reason"]) == ("done", "failed", "card_declined")
    assert row["stripe_payment_intent_id"] == "pi_4"
    [(topic, key, event), *notices] = await outbox(pool)
    assert (topic, key) == (TOPICS.top_up_failed, b"cust-1")
    # The stripe_paused notice goes with the pause it announces (a newer card on record is
    # not paused, and its owner needs no notice).
    assert [(n[0], n[2]["type"]) for n in notices] == (
        [(TOPICS.auto_topup_notice, "stripe_paused")] if paused else []
    )
    assert event["reason"] == "card_declined"
    assert event["detail"] == "Your card was declined."
    assert event["payment_method"] == "stripe"
    rows = await pool.fetch("SELECT customer_id, stripe_paused FROM wallets")
    wallets = {r["customer_id"]: r["stripe_paused"] for r in rows}
    assert wallets == {"cust-1": paused, "cust-2": False}
    assert await charger(pool, gateway, now).run_once() == 0


async def test_a_pending_payment_is_looked_up_not_charged_again(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = _topup()
    await claim(pool, topup, now)
    gateway = FakeGateway(ChargeResult(ChargeStatus.PENDING, "pi_5"), succeeded("pi_5"))
    worker = charger(pool, gateway, now)

    assert await worker.run_once() == 1
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["stripe_payment_intent_id"], row["in_future"]) == (
        "charging",
        "pi_5",
        True,
    )
    assert await outbox(pool) == []
    await make_due(pool, topup, now)
    assert await worker.run_once() == 1

    assert len(gateway.calls) == 1
    assert gateway.retrieved == ["pi_5"]
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"]) == ("done", "credit_issued")
    [(topic, _, event)] = await outbox(pool)
    assert (topic, event["stripe_payment_intent_id"]) == (TOPICS.credit_issued, "pi_5")


async def test_two_chargers_racing_on_one_due_row_charge_it_once(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = _topup()
    await claim(pool, topup, now)
    gate = asyncio.Event()
    gateway = FakeGateway(After(gate, succeeded("pi_6")))  # a second call fails the test
    first, second = charger(pool, gateway, now), charger(pool, gateway, now)
    tasks = {asyncio.create_task(first.run_once()), asyncio.create_task(second.run_once())}

    # The winner holds the lease inside its Stripe call; the loser must come back empty-handed.
    done, pending = await asyncio.wait(
        tasks, timeout=STEP_SECONDS, return_when=asyncio.FIRST_COMPLETED
    )
    assert [t.result() for t in done] == [0]
    # (the loser may come back before the winner, past its lease, has reached Stripe)
    await _until(lambda: len(gateway.calls) == 1, "the winner's Stripe call")
    gate.set()
    assert [await asyncio.wait_for(t, STEP_SECONDS) for t in pending] == [1]

    assert len(gateway.calls) == 1
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"], row["attempts"]) == ("done", "credit_issued", 1)
    assert len(await outbox(pool)) == 1


async def test_many_chargers_many_rows_each_charged_exactly_once(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topups = [_topup(f"cust-{i}", Card(f"cus_{i}", f"pm_{i}")) for i in range(60)]
    for topup in topups:
        await claim(pool, topup, now)
    gateway = FakeGateway(*(succeeded(f"pi_{i}") for i in range(60)))
    # Eight workers leasing at once, in small bites: a lease that could hand one row to two
    # workers (say, without FOR UPDATE SKIP LOCKED) makes a second call and fails this test.
    workers = [charger(pool, gateway, now, concurrency=3) for _ in range(8)]

    handled = 0
    while True:
        counts = await asyncio.gather(*(w.run_once() for w in workers))
        if not any(counts):
            break
        handled += sum(counts)

    assert handled == 60
    keys = [c.idempotency_key for c in gateway.calls]
    assert sorted(keys) == sorted(stripe_idempotency_key(t) for t in topups)
    rows = await pool.fetch("SELECT phase, attempts FROM daily_keys")
    assert {(r["phase"], r["attempts"]) for r in rows} == {("done", 1)}
    assert len(await outbox(pool)) == 60


async def test_a_failure_that_is_not_the_cards_does_not_pause(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = _topup(card=Card("cus_test", "pm_old"))
    async with PgUnitOfWork(pool) as uow:
        await uow.store.lock_wallets(["cust-1"], DAY)
        await uow.store.save_wallets([Wallet("cust-1", card=Card("cus_test", "pm_old"))])
        await uow.commit()
    await claim(pool, topup, now)
    gateway = FakeGateway(ChargeResult(ChargeStatus.FAILED, None, "amount_too_small", "too small"))

    assert await charger(pool, gateway, now).run_once() == 1

    [(_, _, event)] = await outbox(pool)
    assert event["reason"] == "amount_too_small"
    assert await pool.fetchval("SELECT stripe_paused FROM wallets") is False


async def test_a_charger_whose_clock_runs_ahead_never_takes_a_held_charge(
    pool: asyncpg.Pool, now: datetime
) -> None:
    """The lease is judged on PostgreSQL's clock: another instance ten minutes ahead (past the
    60 s lease on its own clock) finds the charge held while the first one's Stripe call runs."""
    topup = _topup()
    await claim(pool, topup, now)
    gate = asyncio.Event()
    gateway = FakeGateway(After(gate, succeeded("pi_7")))  # a second call fails the test
    holder = asyncio.create_task(charger(pool, gateway, now).run_once())
    await _until(lambda: len(gateway.calls) == 1, "the first charger's Stripe call")
    ahead = charger(pool, gateway, now + timedelta(minutes=10))
    assert await ahead.run_once() == 0
    gate.set()
    assert await asyncio.wait_for(holder, STEP_SECONDS) == 1
    assert len(gateway.calls) == 1
    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["attempts"], row["leased_until"]) == ("done", 1, None)
