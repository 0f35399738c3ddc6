"""Fakes of the Stripe charger's ports (fakes over mocks): a clock that moves only when told,
an in-memory ChargeStore with the phases of daily_keys, and a scripted PaymentGateway that
records every call with the clock's time.

The store follows queries.sql: lease takes due 'claimed'/'charging' rows (never
'needs_review'), sets the first attempt's time once, and finish/postpone/review touch only a
row still 'charging'. finish, like PgChargeStore's, hands the charge's wallets to the decision
and keeps what it changed (wallets, outbox rows and notices, an open invoice, the card's pause).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from service.domain.model import Card, PaymentMethod, TopUp, Wallet
from service.service_layer.charges import (
    ChargeOutcome,
    Decide,
    InvoiceRow,
    PendingCharge,
    charge_wallets,
)
from service.service_layer.payments import ChargeRequest, ChargeResult, TransientChargeError
from service.service_layer.ports import OutboxRecord

# Every instant of these tests is built from this one.
T0 = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
DAY = date(2026, 11, 25)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


def stripe_topup(customer_id: str = "cust-1", card: Card | None = None) -> TopUp:
    return TopUp(
        customer_id=customer_id,
        business_date=DAY,
        trigger_event_id=f"ev-{customer_id}",
        balance_at_trigger=Decimal("5.00"),
        limit_threshold=Decimal("10.00"),
        amount=Decimal("100.00"),
        currency="USD",
        payment_method=PaymentMethod.STRIPE,
        card=card or Card(f"cus_{customer_id}", f"pm_{customer_id}"),
    )


@dataclass
class Row:
    """One daily_keys row of a Stripe top-up."""

    topup: TopUp
    claimed_at: datetime
    phase: str = "claimed"
    attempts: int = 0
    first_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    payment_intent_id: str | None = None
    looked_up_at: datetime | None = None
    result: str | None = None
    reason: str | None = None
    detail: str = ""


class MemoryChargeStore:
    """A ChargeStore in memory, on the test's clock."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.rows: dict[str, Row] = {}
        self.outbox: dict[str, OutboxRecord] = {}  # by dedupe key, as the outbox table
        self.paused: list[tuple[str, str]] = []  # (customer_id, payment method) paused
        self.wallets: dict[str, Wallet] = {}  # the wallets table (only those a test needs)
        self.open_invoices: dict[str, InvoiceRow] = {}  # by invoice_request_id
        self.reviews = 0

    def claim(self, topup: TopUp, **fields: Any) -> Row:
        row = Row(topup, self._clock(), next_attempt_at=self._clock(), **fields)
        self.rows[topup.idempotency_key] = row
        # A claim is made by the batch holding the customer's wallet, with the card on record.
        self.wallets.setdefault(topup.customer_id, Wallet(topup.customer_id, card=topup.card))
        return row

    def row(self, topup: TopUp) -> Row:
        return self.rows[topup.idempotency_key]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r.value or b"{}") | {"_topic": r.topic} for r in self.outbox.values()]

    async def lease(self, limit: int, lease_seconds: float, now: datetime) -> list[PendingCharge]:
        due = sorted(
            (
                r
                for r in self.rows.values()
                if r.phase in ("claimed", "charging")
                and r.next_attempt_at is not None
                and r.next_attempt_at <= self._clock()
            ),
            key=lambda r: r.next_attempt_at or now,
        )[:limit]
        leased = []
        for r in due:
            r.phase = "charging"
            r.attempts += 1
            r.first_attempt_at = r.first_attempt_at or now
            r.next_attempt_at = self._clock() + timedelta(seconds=lease_seconds)
            leased.append(
                PendingCharge(
                    r.topup,
                    r.attempts,
                    r.payment_intent_id,
                    r.claimed_at,
                    (),
                    r.first_attempt_at,
                )
            )
        return leased

    async def finish(self, charge: PendingCharge, decide: Decide) -> ChargeOutcome | None:
        r = self.row(charge.topup)
        if r.phase != "charging":
            return None
        locked = {i: self.wallets.get(i, Wallet(i)) for i in charge_wallets(charge.topup)}
        outcome = decide(locked)
        r.phase, r.result, r.reason = "done", outcome.result, outcome.reason
        r.detail, r.payment_intent_id = outcome.detail, outcome.payment_intent_id
        r.next_attempt_at = None
        self.wallets.update(locked)  # a wallet seen for the first time is created
        self.wallets.update((w.customer_id, w) for w in outcome.changed)
        for record in (outcome.record, *outcome.notices):
            self.outbox.setdefault(record.dedupe_key, record)
        invoice = outcome.open_invoice
        if invoice is not None:
            self.open_invoices.setdefault(invoice.invoice_request_id, invoice)
        if outcome.pause_card is not None:
            self.paused.append((charge.topup.customer_id, outcome.pause_card))
            wallet = self.wallets[charge.topup.customer_id]
            card = wallet.card
            if card is not None and card.stripe_payment_method_id == outcome.pause_card:
                self.wallets[wallet.customer_id] = replace(wallet, stripe_paused=True)
        return outcome

    async def postpone(
        self,
        charge: PendingCharge,
        until: datetime,
        detail: str,
        payment_intent_id: str | None,
        looked_up_at: datetime | None = None,
    ) -> None:
        r = self.row(charge.topup)
        if r.phase != "charging":
            return
        r.next_attempt_at, r.detail = until, detail
        r.payment_intent_id = payment_intent_id or r.payment_intent_id
        r.looked_up_at = looked_up_at or r.looked_up_at

    async def review(
        self, charge: PendingCharge, detail: str, looked_up_at: datetime | None
    ) -> bool:
        r = self.row(charge.topup)
        if r.phase != "charging":
            return False
        r.phase, r.detail, r.next_attempt_at = "needs_review", detail, None
        r.looked_up_at = looked_up_at or r.looked_up_at
        self.reviews += 1
        return True


@dataclass(frozen=True)
class Call:
    kind: str  # charge | retrieve | find
    at: datetime
    argument: ChargeRequest | str


@dataclass
class ScriptedGateway:
    """A PaymentGateway answering each kind of call from its own script. An empty script
    answers with its `then_*` default when there is one; else the call fails the test."""

    clock: FakeClock
    charges: list[ChargeResult | Exception] = field(default_factory=list)
    retrieves: list[ChargeResult | Exception] = field(default_factory=list)
    finds: list[list[ChargeResult] | Exception] = field(default_factory=list)
    then_charge: ChargeResult | Exception | None = None
    then_find: list[ChargeResult] | Exception | None = None
    calls: list[Call] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [c.kind for c in self.calls]

    def creates(self) -> list[Call]:
        return [c for c in self.calls if c.kind == "charge"]

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.calls.append(Call("charge", self.clock(), request))
        answer = _next(self.charges, self.then_charge, "create")
        assert isinstance(answer, ChargeResult)
        return answer

    async def retrieve(self, payment_intent_id: str) -> ChargeResult:
        self.calls.append(Call("retrieve", self.clock(), payment_intent_id))
        answer = _next(self.retrieves, None, "retrieve")
        assert isinstance(answer, ChargeResult)
        return answer

    async def find(self, daily_key: str) -> list[ChargeResult]:
        self.calls.append(Call("find", self.clock(), daily_key))
        answer = _next(self.finds, self.then_find, "search")
        assert isinstance(answer, list)
        return answer


def _next(script: list[Any], default: Any, what: str) -> Any:
    if script:
        answer = script.pop(0)
    elif default is not None:
        answer = default
    else:
        raise AssertionError(f"unexpected {what}")
    if isinstance(answer, Exception):
        raise answer
    return answer


def server_error() -> TransientChargeError:
    return TransientChargeError("APIError (500): An unknown error occurred")
