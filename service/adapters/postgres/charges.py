"""Persistence of the Stripe charge phases, on the daily key's row."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from service.adapters.postgres.sql import q
from service.adapters.postgres.store import PgBatchStore, card_from_row
from service.domain.model import PaymentMethod, TopUp
from service.service_layer.charger import ChargeOutcome, PendingCharge


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

    async def finish(self, charge: PendingCharge, outcome: ChargeOutcome) -> bool:
        t = charge.topup
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                q("finish_charge"),
                t.customer_id,
                t.business_date,
                outcome.result,
                outcome.reason,
                outcome.detail,
                outcome.payment_intent_id,
            )
            if done is None:
                return False  # another worker finished it first
            await PgBatchStore(conn).add_outbox([outcome.record])
            if outcome.pause_card is not None:
                await conn.execute(q("pause_stripe"), t.customer_id, outcome.pause_card)
        return True

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
