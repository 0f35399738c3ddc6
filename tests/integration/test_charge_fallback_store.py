"""A failed Stripe charge's fallback on PostgreSQL (PgChargeStore, and `charges resolve`): in
the transaction that records the result, the wallets are locked and written back (the
partner's reservation, the customer's month), the fallback's event, the stripe_paused notice
and a fallback invoice's open_invoices row are queued.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from service.adapters.postgres.charge_admin import resolve
from service.adapters.postgres.store import PgUnitOfWork
from service.contract.codec import output_event_id
from service.domain.model import (
    AmountMode,
    Balance,
    Card,
    MonthSpend,
    PaymentMethod,
    TopUp,
    Wallet,
)
from service.service_layer.payments import ChargeResult, ChargeStatus
from tests.integration.test_charger import (
    DAY,
    TOPICS,
    FakeGateway,
    _topup,
    charger,
    claim,
    daily_key,
    outbox,
)

PARTNER = "partner-1"
CARD = Card("cus_test", "pm_old")
COUNTED = MonthSpend("2026-11", Decimal("100.00"))  # the claim counted the charge


def declined(reason: str = "card_declined") -> ChargeResult:
    return ChargeResult(ChargeStatus.FAILED, "pi_9", reason, "Your card was declined.", True)


def with_fallback(method: PaymentMethod | None) -> TopUp:
    return replace(_topup(card=CARD), partner_id=PARTNER, fallback_method=method)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def given_wallets(pool: asyncpg.Pool, partner_balance: str | None) -> None:
    wallets = [Wallet("cust-1", card=CARD, month=COUNTED)]
    if partner_balance is not None:
        balance = Balance(
            Decimal(partner_balance), "USD", datetime(2026, 11, 25, tzinfo=UTC), 1, "b"
        )
        wallets.append(Wallet(PARTNER, balance=balance))
    async with PgUnitOfWork(pool) as uow:
        await uow.store.lock_wallets([w.customer_id for w in wallets], DAY)
        await uow.store.save_wallets(wallets)
        await uow.commit()


async def wallet(pool: asyncpg.Pool, customer_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT stripe_paused, month_spend, credits_out FROM wallets WHERE customer_id = $1",
        customer_id,
    )
    assert row is not None
    return row


def spent(row: asyncpg.Record) -> Decimal:
    return Decimal(json.loads(row["month_spend"])["spent"])


async def test_a_declined_card_falls_back_to_the_partner(pool: asyncpg.Pool, now: datetime) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    await given_wallets(pool, "500.00")
    await claim(pool, topup, now)

    assert await charger(pool, FakeGateway(declined()), now).run_once() == 1

    row = await daily_key(pool, topup, now)
    assert (row["phase"], row["result"], row["reason"]) == ("done", "credit_issued", None)
    assert (row["amount_mode"], row["fallback_method"]) == ("fixed", "master_account")
    (topic, key, credit), (notice_topic, _, notice) = await outbox(pool)
    assert (topic, key) == (TOPICS.credit_issued, b"cust-1")
    assert credit["event_id"] == output_event_id("cust-1", DAY, "credit-issued|master_account")
    assert (credit["payment_method"], credit["fallback_from"]) == ("master_account", "stripe")
    assert (credit["partner_id"], credit["amount_mode"]) == (PARTNER, "fixed")
    assert (notice_topic, notice["type"], notice["reason"]) == (
        TOPICS.auto_topup_notice,
        "stripe_paused",
        "card_declined",
    )
    partner = await wallet(pool, PARTNER)
    assert '"' + credit["event_id"] + '"' in partner["credits_out"]  # reserved under its id
    customer = await wallet(pool, "cust-1")
    assert customer["stripe_paused"]
    assert spent(customer) == Decimal("100.00")


async def test_a_partner_without_funds_fails_and_gives_the_month_back(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    await given_wallets(pool, "40.00")
    await claim(pool, topup, now)

    assert await charger(pool, FakeGateway(declined("try_again_later")), now).run_once() == 1

    row = await daily_key(pool, topup, now)
    assert (row["result"], row["reason"]) == ("failed", "partner_insufficient_funds")
    [(topic, _, failed)] = await outbox(pool)  # a temporary decline: no pause, no notice
    assert topic == TOPICS.top_up_failed
    assert failed["event_id"] == output_event_id("cust-1", DAY, "top-up-failed|master_account")
    assert "stripe failed (try_again_later" in failed["detail"]
    assert (await wallet(pool, PARTNER))["credits_out"] == "[]"
    customer = await wallet(pool, "cust-1")
    assert not customer["stripe_paused"]
    assert spent(customer) == Decimal("0")


async def test_a_cheque_tt_fallback_opens_its_invoice(pool: asyncpg.Pool, now: datetime) -> None:
    topup = with_fallback(PaymentMethod.CHEQUE_TT)
    await given_wallets(pool, None)
    await claim(pool, topup, now)

    assert await charger(pool, FakeGateway(declined()), now).run_once() == 1

    assert (await daily_key(pool, topup, now))["result"] == "invoice_requested"
    (topic, _, invoice), _notice = await outbox(pool)
    assert (topic, invoice["fallback_from"]) == (TOPICS.invoice_requested, "stripe")
    rows = await pool.fetch("SELECT * FROM open_invoices")
    assert [
        (r["invoice_request_id"], r["customer_id"], r["business_date"], r["amount"], r["status"])
        for r in rows
    ] == [(invoice["event_id"], "cust-1", DAY, Decimal("100.00"), "requested")]
    assert rows[0]["requested_at"] == now
    assert spent(await wallet(pool, "cust-1")) == Decimal("100.00")


async def test_an_operator_settling_as_failed_falls_back_too(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    await given_wallets(pool, "500.00")
    await claim(pool, topup, now)
    await pool.execute(
        "UPDATE daily_keys SET phase = 'needs_review', next_attempt_at = NULL"
        " WHERE customer_id = 'cust-1'"
    )
    decision = ChargeResult(ChargeStatus.FAILED, None, "stripe_charge_unresolved", "by hand")

    async with pool.acquire() as conn:
        done = await resolve(
            conn,
            "cust-1",
            DAY,
            decision,
            by="ops",
            why="no charge at Stripe",
            now=now,
            topics=TOPICS,
        )

    assert (done.result, done.topic) == ("credit_issued", TOPICS.credit_issued)
    assert done.event_id == output_event_id("cust-1", DAY, "credit-issued|master_account")
    [(_, _, credit)] = await outbox(pool)  # not a card failure: no pause, no notice
    assert credit["fallback_from"] == "stripe"
    assert spent(await wallet(pool, "cust-1")) == Decimal("100.00")
    audit = await pool.fetchrow("SELECT decision, event_id FROM charge_audit")
    assert audit is not None
    assert (audit["decision"], audit["event_id"]) == ("failed", done.event_id)


async def test_the_events_carry_the_amount_mode_of_the_claim(
    pool: asyncpg.Pool, now: datetime
) -> None:
    topup = replace(with_fallback(None), amount_mode=AmountMode.TO_TARGET)
    await given_wallets(pool, None)
    await claim(pool, topup, now)

    gateway = FakeGateway(ChargeResult(ChargeStatus.SUCCEEDED, "pi_ok"))
    assert await charger(pool, gateway, now).run_once() == 1

    [(topic, _, credit)] = await outbox(pool)
    assert (topic, credit["amount_mode"]) == (TOPICS.credit_issued, "to_target")
    assert spent(await wallet(pool, "cust-1")) == Decimal("100.00")  # a success stays counted
