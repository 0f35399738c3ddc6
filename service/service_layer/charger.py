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

The Stripe horizon (contract v2). Stripe keeps an idempotency key for 24 hours only: it replays
a saved 5xx for that key until then, and after it a create under the same key makes a new
PaymentIntent. So, counting from the charge's first attempt:
- once a request's outcome was unknown (a 5xx, a network error, a timeout, a worker that died
  mid-call: any attempt after the first without a PaymentIntent id), and for every attempt
  past `lookup_after` (23 h), the charge is looked up at Stripe by metadata.daily_key before
  any create, and what is found is adopted (succeeded: credit-issued; failed: top-up-failed;
  processing: wait, then read it by its id);
- no create is ever sent past the key horizon (24 h, less one lease so that the last create
  is answered inside it): a charge not found there waits in phase 'needs_review' for an
  operator (`auto-topup charges`).

Search lag. Stripe's Search API is eventually consistent: a PaymentIntent is searchable under
a minute after a write in normal times, up to an hour in an outage. So "not found" is never
taken as proof that no charge was made:
- inside the horizon, not found (or a search that fails) leads to the same create under the
  same idempotency key, which Stripe still remembers: if the earlier request did create a
  PaymentIntent, Stripe answers with it (or replays its saved error) and makes no second one.
  The search is what gives the outcome behind a replayed 5xx; it is never what allows a
  create. Past `lookup_after` a search must have answered before a create is sent;
- past the create deadline, a not-found counts only from a search made `search_settle` (5
  minutes) after the horizon, when every create sent has been answered and indexed in normal
  times; even then the charge is not failed but goes to 'needs_review' (an outage can delay
  the index longer): a person decides, with the Stripe dashboard, and `charges resolve`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from service.config import Topics
from service.domain.model import Card
from service.domain.money import card_minor_units
from service.domain.rails import DEFAULT_RAILS, Rails
from service.service_layer.charges import (
    CREDIT_HOLD,
    ChargeOutcome,
    ChargeStore,
    PendingCharge,
    Wallets,
    charge_outcome,
    stripe_idempotency_key,
)
from service.service_layer.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    PaymentGateway,
    TransientChargeError,
    adopt,
)
from service.service_layer.ports import Clock
from service.service_layer.worker import Background, Worker

__all__ = [
    "KEY_HORIZON",
    "LOOKUP_AFTER",
    "SEARCH_SETTLE",
    "ChargeOutcome",
    "ChargeStore",
    "Charger",
    "PendingCharge",
    "charge_outcome",
    "stripe_idempotency_key",
]

log = logging.getLogger(__name__)

# Stripe keeps idempotency keys for at least 24 hours; warn well before that.
UNRESOLVED_WARNING = timedelta(hours=20)
# Defaults of AUTO_TOPUP_STRIPE_LOOKUP_AFTER_SECONDS and AUTO_TOPUP_STRIPE_KEY_HORIZON_SECONDS.
LOOKUP_AFTER = timedelta(hours=23)
KEY_HORIZON = timedelta(hours=24)
# How long after the horizon a search must be made before its "not found" counts (Stripe:
# searchable in under a minute in normal times).
SEARCH_SETTLE = timedelta(minutes=5)


class _Settled:
    """The lookup settled the charge for now (adopted, postponed or sent to review)."""


_SETTLED: Final = _Settled()


def _warn_if_doubled(key: str, found: list[ChargeResult], adopted: ChargeResult) -> None:
    if sum(r.status is ChargeStatus.SUCCEEDED for r in found) > 1:
        log.error(
            "charge %s: Stripe holds %d succeeded PaymentIntents for one daily key (%s): "
            "refund all but %s",
            key,
            len(found),
            ", ".join(str(r.payment_intent_id) for r in found),
            adopted.payment_intent_id,
        )


class Charger(Background):
    _unfinished = (
        "stopped with Stripe charges in flight after %.1fs; they resume under the same "
        "idempotency key after their lease"
    )

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
        lookup_after: timedelta = LOOKUP_AFTER,
        key_horizon: timedelta = KEY_HORIZON,
        search_settle: timedelta = SEARCH_SETTLE,
        on_published: Callable[[], None] = lambda: None,
        rails: Rails = DEFAULT_RAILS,
        credit_hold: timedelta = CREDIT_HOLD,
    ) -> None:
        if not timedelta(0) < lookup_after < key_horizon:
            raise ValueError("the lookup age must be above zero and below the key horizon")
        self._store = store
        self._gateway = gateway
        self._clock = clock
        self._topics = topics
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._lookup_after = lookup_after
        # A create is sent only while it is answered inside the horizon (within its lease).
        self._create_deadline = key_horizon - timedelta(seconds=lease_seconds)
        # The first search whose "not found" sends a charge to review.
        self._review_after = key_horizon + search_settle
        self._on_published = on_published
        self._rails = rails
        self._credit_hold = credit_hold
        self._worker = Worker("stripe-charger", self.run_once, poll_interval=poll_interval)

    async def run_once(self) -> int:
        """Leases the due charges and settles them; returns how many it handled."""
        charges = await self._store.lease(self._concurrency, self._lease_seconds, self._clock())
        if charges:
            await asyncio.gather(*(self._settle(c) for c in charges))
        return len(charges)

    def _retry_at(self, attempts: int) -> datetime:
        delay = min(self._retry_base * 2 ** max(attempts - 1, 0), self._retry_max)
        return self._clock() + timedelta(seconds=delay * random.uniform(0.8, 1.2))

    async def _settle(self, charge: PendingCharge) -> None:
        card = charge.topup.card
        if card is None:  # cannot happen for a claim made by the rules; settle it anyway
            await self._finish(
                charge,
                ChargeResult(ChargeStatus.FAILED, None, "stripe_card_missing", "no card on record"),
            )
            return
        if charge.payment_intent_id is not None:
            await self._read(charge, charge.payment_intent_id)
            return
        looked = await self._look_up(charge)
        if looked is _SETTLED:
            return
        looked_up_at = looked if isinstance(looked, datetime) else None
        if charge.attempts > 1 and self._clock() - charge.started_at >= self._create_deadline:
            # The lookup itself took us past the create deadline: never a create now.
            until = charge.started_at + self._review_after
            await self._store.postpone(
                charge, until, "create deadline passed during the lookup", None, looked_up_at
            )
            return
        await self._create(charge, card, looked_up_at)

    async def _read(self, charge: PendingCharge, payment_intent_id: str) -> None:
        """A PaymentIntent we know: read it by its id (strongly consistent, never a create)."""
        try:
            result = await self._gateway.retrieve(payment_intent_id)
        except TransientChargeError as exc:
            await self._postpone(charge, str(exc), None)
            return
        await self._settled(charge, result, None)

    async def _look_up(self, charge: PendingCharge) -> datetime | _Settled | None:
        """Searches Stripe by the daily key when an earlier outcome is unknown or the key is
        old, and adopts what it finds. Returns _SETTLED when the charge needs nothing more now,
        else when the search answered (None: no search, or it failed inside the window)."""
        now = self._clock()
        age = now - charge.started_at
        # Old enough that no create goes out before a search has answered.
        careful = age >= min(self._lookup_after, self._create_deadline)
        # Any attempt after the first without a PaymentIntent id follows an unknown outcome.
        if charge.attempts <= 1 and not careful:
            return None
        key = charge.topup.idempotency_key
        try:
            found = await self._gateway.find(key)
        except TransientChargeError as exc:
            if not careful:
                # Inside the window the idempotency key still covers the create that follows.
                log.warning("charge %s: lookup failed (%s); retrying under the same key", key, exc)
                return None
            if age >= self._review_after:
                await self._review(charge, f"no answer from Stripe's search: {exc}", None)
            else:
                await self._postpone(charge, str(exc), None)
            return _SETTLED
        adopted = adopt(found)
        if adopted is not None:
            _warn_if_doubled(key, found, adopted)
            await self._settled(charge, adopted, now)
            return _SETTLED
        if age < self._create_deadline:
            return now
        # Never a create past the horizon: Stripe may have forgotten the key.
        if age >= self._review_after:
            detail = "no PaymentIntent found by metadata.daily_key past the Stripe key horizon"
            await self._review(charge, detail, now)
        else:  # the last creates may not be searchable yet: look again then
            until = charge.started_at + self._review_after
            await self._store.postpone(
                charge, until, "not found yet; final lookup pending", None, now
            )
        return _SETTLED

    async def _create(
        self, charge: PendingCharge, card: Card, looked_up_at: datetime | None
    ) -> None:
        topup = charge.topup
        request = ChargeRequest(
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
        try:
            result = await self._gateway.charge(request)
        except TransientChargeError as exc:
            await self._postpone(charge, str(exc), None, looked_up_at)
            return
        await self._settled(charge, result, looked_up_at)

    async def _settled(
        self, charge: PendingCharge, result: ChargeResult, looked_up_at: datetime | None
    ) -> None:
        if result.status is ChargeStatus.PENDING:
            await self._postpone(
                charge, "payment processing", result.payment_intent_id, looked_up_at
            )
            return
        await self._finish(charge, result)

    async def _review(
        self, charge: PendingCharge, detail: str, looked_up_at: datetime | None
    ) -> None:
        if await self._store.review(charge, detail[:500], looked_up_at):
            log.error(
                "charge %s needs review after %d attempts (%s): no more requests are sent; "
                "see `auto-topup charges list`",
                charge.topup.idempotency_key,
                charge.attempts,
                detail,
            )

    async def _postpone(
        self,
        charge: PendingCharge,
        detail: str,
        intent: str | None,
        looked_up_at: datetime | None = None,
    ) -> None:
        until = self._retry_at(charge.attempts)
        age = self._clock() - charge.started_at
        level = logging.ERROR if age > UNRESOLVED_WARNING else logging.WARNING
        log.log(
            level,
            "charge %s unresolved after %d attempts (%s); next attempt at %s",
            charge.topup.idempotency_key,
            charge.attempts,
            detail,
            until.isoformat(),
        )
        await self._store.postpone(charge, until, detail, intent, looked_up_at)

    async def _finish(self, charge: PendingCharge, result: ChargeResult) -> None:
        topup = charge.topup
        now = self._clock()

        def decide(wallets: Wallets) -> ChargeOutcome:
            return charge_outcome(
                self._topics, charge, result, now, self._rails, wallets, self._credit_hold
            )

        outcome = await self._store.finish(charge, decide)
        if outcome is not None:
            settled = outcome.topup or topup
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
                        "result": outcome.result,
                        "settled_by": settled.payment_method.value,
                    }
                },
            )
            self._on_published()
