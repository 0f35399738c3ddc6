"""Stripe charges for operators: the ones not settled yet, their gauges, and settling one by
hand (`auto-topup charges`). The SQL is in queries.sql."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import asyncpg

from service.adapters.postgres.charges import pending_from_row, persist_outcome
from service.adapters.postgres.sql import q
from service.adapters.postgres.store import Connection, PgBatchStore
from service.config import Topics
from service.domain.model import daily_key
from service.service_layer.charges import (
    CREDIT_HOLD,
    ChargeOutcome,
    charge_outcome,
    charge_wallets,
)
from service.service_layer.payments import ChargeResult, ChargeStatus

QUERY_TIMEOUT_SECONDS = 10.0
# The phase an operator may settle: the charger has given up on it and sends nothing more.
RESOLVABLE_PHASE = "needs_review"
# top-up-failed's detail when an operator settles a charge as failed (the operator's own words
# stay in charge_audit: they are not for other teams).
RESOLVED_FAILED_DETAIL = "settled as failed by an operator after review of the Stripe charge"


@dataclass(frozen=True, slots=True)
class OpenCharge:
    """A Stripe charge not settled yet, as `charges list` shows it."""

    customer_id: str
    business_date: date
    amount: Decimal
    currency: str
    phase: str  # claimed | charging | needs_review
    attempts: int
    detail: str | None
    payment_intent_id: str | None
    stripe_customer_id: str | None
    claimed_at: datetime
    first_attempt_at: datetime | None
    looked_up_at: datetime | None
    next_attempt_at: datetime | None
    updated_at: datetime

    @property
    def daily_key(self) -> str:
        return daily_key(self.customer_id, self.business_date)


@dataclass(frozen=True, slots=True)
class ChargeGauges:
    needs_review: int
    oldest_unresolved: datetime | None  # claim time of the oldest charge still being charged


@dataclass(frozen=True, slots=True)
class Resolution:
    """What `charges resolve` did."""

    daily_key: str
    old_phase: str
    result: str  # credit_issued | invoice_requested | failed
    reason: str | None
    payment_intent_id: str | None
    event_id: str
    topic: str
    audit_id: int


class ChargeNotFound(Exception):
    """No daily key by that name."""


class ChargeNotResolvable(Exception):
    """The daily key exists but is not waiting for an operator."""

    def __init__(self, key: str, phase: str) -> None:
        super().__init__(f"{key} is in phase {phase!r}, not {RESOLVABLE_PHASE!r}")
        self.phase = phase


async def open_charges(conn: Connection, limit: int) -> list[OpenCharge]:
    rows = await conn.fetch(q("open_charges"), limit, timeout=QUERY_TIMEOUT_SECONDS)
    return [
        OpenCharge(
            customer_id=r["customer_id"],
            business_date=r["business_date"],
            amount=Decimal(r["amount"]),
            currency=r["currency"],
            phase=r["phase"],
            attempts=r["attempts"],
            detail=r["detail"],
            payment_intent_id=r["stripe_payment_intent_id"],
            stripe_customer_id=r["stripe_customer_id"],
            claimed_at=r["created_at"],
            first_attempt_at=r["first_attempt_at"],
            looked_up_at=r["looked_up_at"],
            next_attempt_at=r["next_attempt_at"],
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


async def charge_gauges(pool: asyncpg.Pool) -> ChargeGauges:
    row = await pool.fetchrow(q("charge_gauges"), timeout=2)
    assert row is not None
    return ChargeGauges(int(row["needs_review"]), row["oldest_unresolved"])


async def _lock_resolvable(
    conn: Connection, customer_id: str, business_date: date
) -> asyncpg.Record:
    """The charge's row, locked; ChargeNotFound / ChargeNotResolvable (not in needs_review)."""
    row = await conn.fetchrow(
        q("lock_charge"), customer_id, business_date, timeout=QUERY_TIMEOUT_SECONDS
    )
    if row is None:
        raise ChargeNotFound(daily_key(customer_id, business_date))
    if row["phase"] != RESOLVABLE_PHASE:
        raise ChargeNotResolvable(daily_key(customer_id, business_date), row["phase"])
    return row


async def _audit(
    conn: Connection,
    row: asyncpg.Record,
    decision: ChargeResult,
    outcome: ChargeOutcome,
    *,
    by: str,
    why: str,
    now: datetime,
) -> int:
    """The charge_audit row of a resolution; its id."""
    customer_id, business_date = row["customer_id"], row["business_date"]
    audit_id = await conn.fetchval(
        q("insert_charge_audit"),
        customer_id,
        business_date,
        daily_key(customer_id, business_date),
        row["phase"],
        "succeeded" if decision.status is ChargeStatus.SUCCEEDED else "failed",
        outcome.reason,
        decision.payment_intent_id or row["stripe_payment_intent_id"],
        outcome.record.dedupe_key,
        by,
        why,
        now,
        timeout=QUERY_TIMEOUT_SECONDS,
    )
    return int(audit_id)


async def resolve(
    conn: Connection,
    customer_id: str,
    business_date: date,
    decision: ChargeResult,
    *,
    by: str,
    why: str,
    now: datetime,
    topics: Topics,
    credit_hold: timedelta = CREDIT_HOLD,
) -> Resolution:
    """Settles one charge in 'needs_review' as `decision` (SUCCEEDED with its PaymentIntent, or
    FAILED with a reason), in one transaction: the daily key's result, the output event in the
    outbox (the daily key's deterministic event id, as the charger would have published it;
    the relay publishes it) and an audit row. A failure goes on with the top-up's fallback
    method, as the charger's would (its wallets locked after the charge's row): the fallback's
    event is published instead. Raises ChargeNotFound / ChargeNotResolvable."""
    if decision.status is ChargeStatus.PENDING:
        raise ValueError("a charge is settled as succeeded or failed")
    key = daily_key(customer_id, business_date)
    t = QUERY_TIMEOUT_SECONDS
    async with conn.transaction():
        row = await _lock_resolvable(conn, customer_id, business_date)
        old_phase = row["phase"]
        charge = pending_from_row(row)
        store = PgBatchStore(conn)
        wallets = await store.lock_wallets(charge_wallets(charge.topup), business_date)
        outcome = charge_outcome(
            topics, charge, decision, now, wallets=wallets, credit_hold=credit_hold
        )
        settled = await conn.fetchval(
            q("resolve_charge"),
            customer_id,
            business_date,
            outcome.result,
            outcome.reason,
            outcome.detail,
            decision.payment_intent_id,
            timeout=t,
        )
        assert settled is not None  # the row is locked and was in needs_review
        await persist_outcome(conn, store, charge.topup, outcome)
        audit_id = await _audit(conn, row, decision, outcome, by=by, why=why, now=now)
    return Resolution(
        daily_key=key,
        old_phase=old_phase,
        result=outcome.result,
        reason=outcome.reason,
        payment_intent_id=decision.payment_intent_id,
        event_id=outcome.record.dedupe_key,
        topic=outcome.record.topic,
        audit_id=audit_id,
    )
