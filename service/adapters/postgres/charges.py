"""Persistence of the Stripe charge phases, on the daily key's row."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from service.adapters.postgres.sql import q
from service.adapters.postgres.store import Connection, PgBatchStore, card_from_row
from service.domain.model import AmountMode, PaymentMethod, TopUp
from service.service_layer.charges import (
    ChargeOutcome,
    Decide,
    InvoiceRow,
    PendingCharge,
    charge_wallets,
)


def _method(value: str | None) -> PaymentMethod | None:
    return None if value is None else PaymentMethod(value)


def pending_from_row(row: asyncpg.Record) -> PendingCharge:
    topup = TopUp(
        customer_id=row["customer_id"],
        business_date=row["business_date"],
        trigger_event_id=row["trigger_event_id"],
        balance_at_trigger=row["balance_at_trigger"],
        limit_threshold=row["limit_threshold"],
        amount=row["amount"],
        currency=row["currency"],
        payment_method=PaymentMethod(row["payment_method"]),
        partner_id=row["partner_id"],
        card=card_from_row(row),
        amount_mode=AmountMode(row["amount_mode"]),
        fallback_method=_method(row["fallback_method"]),
    )
    trace = tuple((name, value) for name, value in json.loads(row["trace_headers"]))
    return PendingCharge(
        topup,
        row["attempts"],
        row["stripe_payment_intent_id"],
        row["created_at"],
        trace,
        row["first_attempt_at"],
    )


class PgChargeStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def lease(self, limit: int, lease_seconds: float, now: datetime) -> list[PendingCharge]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(q("lease_charges"), limit, lease_seconds, now)
        return [pending_from_row(r) for r in rows]

    async def finish(self, charge: PendingCharge, decide: Decide) -> ChargeOutcome | None:
        t = charge.topup
        async with self._pool.acquire() as conn, conn.transaction():
            # The charge's row first, then its wallets (as `charges resolve` does).
            row = await conn.fetchrow(q("lock_charge"), t.customer_id, t.business_date)
            if row is None or row["phase"] != "charging":
                return None  # another worker finished it first
            store = PgBatchStore(conn)
            outcome = decide(await store.lock_wallets(charge_wallets(t), t.business_date))
            done = await conn.fetchval(
                q("finish_charge"),
                t.customer_id,
                t.business_date,
                outcome.result,
                outcome.reason,
                outcome.detail,
                outcome.payment_intent_id,
            )
            assert done is not None  # the row is locked and was charging
            await persist_outcome(conn, store, t, outcome)
        return outcome

    async def postpone(
        self,
        charge: PendingCharge,
        until: datetime,
        detail: str,
        payment_intent_id: str | None,
        looked_up_at: datetime | None = None,
    ) -> None:
        t = charge.topup
        async with self._pool.acquire() as conn:
            await conn.execute(
                q("postpone_charge"),
                t.customer_id,
                t.business_date,
                until,
                detail[:500],
                payment_intent_id,
                looked_up_at,
            )

    async def review(
        self, charge: PendingCharge, detail: str, looked_up_at: datetime | None
    ) -> bool:
        t = charge.topup
        async with self._pool.acquire() as conn:
            moved = await conn.fetchval(
                q("review_charge"), t.customer_id, t.business_date, detail[:500], looked_up_at
            )
        return moved is not None


async def _insert_open_invoice(conn: Connection, invoice: InvoiceRow) -> None:
    await conn.execute(
        q("insert_open_invoice_from_charge"),
        invoice.invoice_request_id,
        invoice.customer_id,
        invoice.business_date,
        invoice.amount,
        invoice.currency,
        invoice.requested_at,
    )


async def persist_outcome(
    conn: Connection, store: PgBatchStore, topup: TopUp, outcome: ChargeOutcome
) -> None:
    """What a settled charge changed besides its daily key (in the caller's transaction, the
    wallets locked by `store`): the wallets, the output event and the notices, a fallback's
    open invoice, and the card's pause."""
    if outcome.changed:
        await store.save_wallets(outcome.changed)
    await store.add_outbox([outcome.record, *outcome.notices])
    if outcome.open_invoice is not None:
        await _insert_open_invoice(conn, outcome.open_invoice)
    if outcome.pause_card is not None:
        await conn.execute(q("pause_stripe"), topup.customer_id, outcome.pause_card)
