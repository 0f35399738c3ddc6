"""Payment rails are modules behind one interface: a rail that exists only here, registered
only here, runs a due top-up end to end through the batch handler on the in-memory unit of
work. Nothing in the handler or the charger knows about it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from service.config import Topics
from service.domain.model import PaymentMethod, SettingsUpdated, Wallet
from service.domain.rails import (
    DEFAULT_RAILS,
    ChargeResult,
    ChargeStatus,
    Due,
    InstantRail,
    Output,
    Rail,
    Rails,
    Settled,
    Step,
    Terms,
)
from service.domain.rails.cheque_tt import ChequeTT
from service.domain.rails.master_account import MasterAccount
from service.domain.rails.stripe import Stripe
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord, OutboxRecord
from tests.charge_fakes import stripe_topup
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.fakes import FakeDatabase, fake_uow_factory

TOPICS = Topics()


class Fallback:
    """A toy composition: settle through `first`; if it fails, through `then` instead."""

    def __init__(self, first: Rail, then: Rail) -> None:
        self.method = first.method
        self._first, self._then = first, then

    def settings_error(self, wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
        return self._first.settings_error(wallet, event)

    def terms(self, wallet: Wallet) -> Terms | str:
        return self._first.terms(wallet)

    def paused(self, wallet: Wallet) -> str | None:
        return self._first.paused(wallet)

    def settle(self, due: Due) -> Step:
        step = self._first.settle(due)
        if isinstance(step, Settled) and step.output is Output.TOP_UP_FAILED:
            return self._then.settle(due)
        return step

    def charged(self, topup: object, result: ChargeResult) -> Settled:
        raise AssertionError("settled in the deciding transaction")


class DoubleInvoice(InstantRail):
    """A toy rail for Cheque/TT customers: invoices twice the Trigger Amount, and never while
    the balance is negative."""

    method = PaymentMethod.CHEQUE_TT

    def terms(self, wallet: Wallet) -> Terms | str:
        s = wallet.settings
        assert s is not None
        return Terms(s.limit_threshold, s.trigger_amount * 2, s.currency)

    def paused(self, wallet: Wallet) -> str | None:
        b = wallet.balance
        return "toy_negative_balance" if b is not None and b.amount < 0 else None

    def settle(self, due: Due) -> Step:
        return Settled(Output.INVOICE_REQUESTED)


def _record(topic: str, offset: int, customer: str, body: dict[str, object]) -> InputRecord:
    return InputRecord(topic, 0, offset, customer.encode(), dumps(body))


async def _run(rails: Rails, records: list[InputRecord]) -> FakeDatabase:
    db, uow = fake_uow_factory()
    handler = BatchHandler(uow, lambda: NOW, Policy(rails=rails), TOPICS)
    await handler.handle(records)
    return db


def _outputs(db: FakeDatabase) -> list[tuple[str, dict[str, object]]]:
    def body(r: OutboxRecord) -> dict[str, object]:
        assert r.value is not None
        decoded: dict[str, object] = json.loads(r.value)
        return decoded

    return [(r.topic, body(r)) for r in db.committed.outbox]


def _master_account_records(customer: str, partner_balance: str) -> list[InputRecord]:
    at = NOW - timedelta(minutes=5)
    partner = "partner-toy"
    return [
        _record(
            TOPICS.wallet_balance_changed,
            0,
            partner,
            balance_wire(partner, partner_balance, at=at),
        ),
        _record(
            TOPICS.settings_updated,
            1,
            customer,
            settings_wire(customer, method="master_account", partner_id=partner, at=at),
        ),
        _record(
            TOPICS.wallet_balance_changed,
            2,
            customer,
            balance_wire(customer, "1.00", at=at + timedelta(minutes=1)),
        ),
    ]


async def test_a_fallback_rail_added_in_a_test_invoices_what_the_partner_cannot_cover() -> None:
    records = _master_account_records("cust-fallback", partner_balance="20.00")
    rails = DEFAULT_RAILS.replacing(Fallback(MasterAccount(), ChequeTT()))

    with_fallback = _outputs(await _run(rails, records))
    without = _outputs(await _run(DEFAULT_RAILS, records))

    assert [(t, b["customer_id"]) for t, b in with_fallback] == [
        (TOPICS.invoice_requested, "cust-fallback")
    ]
    assert [(t, b.get("reason")) for t, b in without] == [
        (TOPICS.top_up_failed, "partner_insufficient_funds")
    ]


async def test_a_fallback_rail_keeps_the_first_rails_success() -> None:
    records = _master_account_records("cust-funded", partner_balance="500.00")
    rails = DEFAULT_RAILS.replacing(Fallback(MasterAccount(), ChequeTT()))

    db = await _run(rails, records)

    (only,) = _outputs(db)
    assert only[0] == TOPICS.credit_issued
    assert only[1]["funding_source"] == "master_account"
    partner = db.committed.wallets["partner-toy"]
    assert [c.amount for c in partner.credits_out] == [Decimal("100.00")]


async def test_a_toy_rail_decides_the_amount_the_pause_and_the_output() -> None:
    at = NOW - timedelta(minutes=5)
    customer, frozen = "cust-toy", "cust-toy-negative"
    records = [
        _record(TOPICS.settings_updated, 0, customer, settings_wire(customer, at=at)),
        _record(TOPICS.settings_updated, 1, frozen, settings_wire(frozen, at=at)),
        _record(
            TOPICS.wallet_balance_changed,
            2,
            customer,
            balance_wire(customer, "5.00", at=at + timedelta(minutes=1)),
        ),
        _record(
            TOPICS.wallet_balance_changed,
            3,
            frozen,
            balance_wire(frozen, "-5.00", at=at + timedelta(minutes=1)),
        ),
    ]

    db = await _run(DEFAULT_RAILS.replacing(DoubleInvoice()), records)

    (invoice,) = _outputs(db)
    assert invoice[0] == TOPICS.invoice_requested
    assert (invoice[1]["customer_id"], invoice[1]["amount"]) == (customer, "200.00")
    assert [c.topup.customer_id for c in db.committed.daily_keys] == [customer]
    blocked = {k[0]: k[2] for k in db.committed.decisions}
    assert blocked[frozen] == "toy_negative_balance"


def test_the_default_rails_serve_every_payment_method_once() -> None:
    assert set(DEFAULT_RAILS) == set(PaymentMethod)
    assert all(DEFAULT_RAILS[m].method is m for m in PaymentMethod)


def test_the_stripe_rail_pauses_only_on_a_hard_failure_of_the_card() -> None:
    rail, topup = Stripe(), stripe_topup()
    assert topup.card is not None
    card = topup.card.stripe_payment_method_id
    hard = ChargeResult(ChargeStatus.FAILED, "pi_1", "card_declined", "no", card_unusable=True)
    temporary = replace(hard, reason="try_again_later")
    soft = replace(hard, card_unusable=False)
    assert rail.charged(topup, hard).pause_card == card
    assert rail.charged(topup, temporary).pause_card is None
    assert rail.charged(topup, soft).pause_card is None
    ok = rail.charged(topup, ChargeResult(ChargeStatus.SUCCEEDED, "pi_2"))
    assert (ok.output, ok.payment_intent_id, ok.result) == (
        Output.CREDIT_ISSUED,
        "pi_2",
        "credit_issued",
    )
