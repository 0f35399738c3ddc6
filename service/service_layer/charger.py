"""Stripe charges as atomic phases on the daily key's row (after Brandur Leach's
"idempotency keys in Postgres"): claimed -> charging -> done.

- The batch handler claims the daily key (phase 'claimed') in the transaction that decided.
- The charger leases due rows ('charging', one more attempt, a lease time) in a short
  transaction, calls Stripe with no transaction open, and records the result together with
  the outgoing event in one transaction.
- A network error or a Stripe 5xx postpones the row; the next attempt sends the same Stripe
  idempotency key, so Stripe answers with the first charge instead of making a second one.
- A worker that dies mid-call leaves its row in 'charging'; when the lease runs out, any
  instance resumes it under the same key (the completer).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from service.config import Topics
from service.contract import messages
from service.domain.model import TopUp
from service.domain.money import card_minor_units
from service.service_layer.outbox import output_record
from service.service_layer.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    PaymentGateway,
    TransientChargeError,
)
from service.service_layer.ports import Clock, OutboxRecord
from service.service_layer.worker import Worker

log = logging.getLogger(__name__)

# Stripe keeps idempotency keys for at least 24 hours; warn well before that.
UNRESOLVED_WARNING = timedelta(hours=20)


@dataclass(frozen=True, slots=True)
class PendingCharge:
    topup: TopUp
    attempts: int  # including the one in progress
    payment_intent_id: str | None
    claimed_at: datetime
    trace_headers: tuple[tuple[str, str], ...] = ()


class ChargeStore(Protocol):
    async def lease(self, limit: int, lease_seconds: float) -> list[PendingCharge]: ...

    async def finish(
        self,
        charge: PendingCharge,
        result: str,
        reason: str | None,
        detail: str,
        payment_intent_id: str | None,
        record: OutboxRecord,
        pause_card: str | None,
    ) -> bool: ...

    async def postpone(
        self, charge: PendingCharge, until: datetime, detail: str, payment_intent_id: str | None
    ) -> None: ...


def stripe_idempotency_key(topup: TopUp) -> str:
    """The same for every attempt of one daily key, and for no other."""
    return f"auto-topup:{topup.idempotency_key}"


class Charger:
    def __init__(
        self,
        store: ChargeStore,
        gateway: PaymentGateway,
        clock: Clock,
        topics: Topics,
        *,
        concurrency: int = 8,
        lease_seconds: float = 60.0,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        poll_interval: float = 1.0,
        on_published: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._clock = clock
        self._topics = topics
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._on_published = on_published
        self._worker = Worker("stripe-charger", self.run_once, poll_interval=poll_interval)

    def wake(self) -> None:
        self._worker.wake()

    def start(self) -> None:
        self._worker.start()

    async def stop(self, timeout: float) -> None:
        """Lets the charges in flight finish (within `timeout`); the rest resume later."""
        if not await self._worker.stop(timeout):
            log.warning(
                "stopped with Stripe charges in flight; they resume under the same "
                "idempotency key after their lease"
            )

    async def run_once(self) -> int:
        """Leases the due charges and settles them; returns how many it handled."""
        charges = await self._store.lease(self._concurrency, self._lease_seconds)
        if charges:
            await asyncio.gather(*(self._settle(c) for c in charges))
        return len(charges)

    def _retry_at(self, attempts: int) -> datetime:
        delay = min(self._retry_base * 2 ** max(attempts - 1, 0), self._retry_max)
        return self._clock() + timedelta(seconds=delay * random.uniform(0.8, 1.2))

    async def _settle(self, charge: PendingCharge) -> None:
        topup = charge.topup
        card = topup.card
        if card is None:  # cannot happen for a claim made by the rules; settle it anyway
            await self._finish(
                charge,
                ChargeResult(ChargeStatus.FAILED, None, "stripe_card_missing", "no card on record"),
            )
            return
        try:
            if charge.payment_intent_id is not None:
                result = await self._gateway.retrieve(charge.payment_intent_id)
            else:
                result = await self._gateway.charge(
                    ChargeRequest(
                        idempotency_key=stripe_idempotency_key(topup),
                        amount_minor=card_minor_units(topup.amount, topup.currency),
                        currency=topup.currency,
                        customer=card.stripe_customer_id,
                        payment_method=card.stripe_payment_method_id,
                        metadata={
                            "daily_key": topup.idempotency_key,
                            "trigger_event_id": topup.trigger_event_id[:500],
                        },
                    )
                )
        except TransientChargeError as exc:
            await self._postpone(charge, str(exc), None)
            return
        if result.status is ChargeStatus.PENDING:
            await self._postpone(charge, "payment processing", result.payment_intent_id)
            return
        await self._finish(charge, result)

    async def _postpone(self, charge: PendingCharge, detail: str, intent: str | None) -> None:
        until = self._retry_at(charge.attempts)
        age = self._clock() - charge.claimed_at
        level = logging.ERROR if age > UNRESOLVED_WARNING else logging.WARNING
        log.log(
            level,
            "charge %s unresolved after %d attempts (%s); next attempt at %s",
            charge.topup.idempotency_key,
            charge.attempts,
            detail,
            until.isoformat(),
        )
        await self._store.postpone(charge, until, detail, intent)

    async def _finish(self, charge: PendingCharge, result: ChargeResult) -> None:
        topup, now = charge.topup, self._clock()
        if result.status is ChargeStatus.SUCCEEDED:
            assert result.payment_intent_id is not None
            event = messages.credit_from_stripe(topup, result.payment_intent_id, now)
            record = output_record(self._topics.credit_issued, event, charge.trace_headers)
            done = await self._store.finish(
                charge, "credit_issued", None, "", result.payment_intent_id, record, None
            )
        else:
            reason = result.reason or "card_declined"
            failed = messages.top_up_failed(topup, reason, result.detail, now)
            record = output_record(self._topics.top_up_failed, failed, charge.trace_headers)
            # Only a failure of the card itself pauses Stripe top-ups for this customer.
            unusable = topup.card is not None and result.card_unusable
            card = topup.card.stripe_payment_method_id if unusable and topup.card else None
            done = await self._store.finish(
                charge, "failed", reason, result.detail, result.payment_intent_id, record, card
            )
        if done:
            log.info(
                "charge %s: %s",
                topup.idempotency_key,
                result.status.value,
                extra={
                    "decision": {
                        "customer_id": topup.customer_id,
                        "business_date": topup.business_date.isoformat(),
                        "outcome": result.status.value,
                        "reason": result.reason,
                        "method": "stripe",
                        "payment_intent_id": result.payment_intent_id,
                    }
                },
            )
            self._on_published()
