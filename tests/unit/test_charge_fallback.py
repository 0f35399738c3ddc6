"""A failed Stripe charge goes on with the top-up's fallback method, in the transaction that
records the result (the charger on MemoryChargeStore, ScriptedGateway, a fixed clock): the
fallback's event is published instead of the card's failure, the month's top-ups give a final
failure back and keep a fallback's success, and a card paused by the failure gets one
stripe_paused notice.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from service.config import Topics
from service.contract.codec import notice_event_id, output_event_id
from service.domain.model import Balance, Card, MonthSpend, PaymentMethod, TopUp, Wallet
from service.service_layer.charger import Charger
from service.service_layer.charges import PendingCharge, charge_outcome, charge_wallets
from service.service_layer.payments import ChargeResult, ChargeStatus
from tests.charge_fakes import DAY, T0, FakeClock, MemoryChargeStore, ScriptedGateway, stripe_topup

TOPICS = Topics()
PARTNER = "partner-1"
CARD = Card("cus_cust-1", "pm_cust-1")
# The claim counted the charge's amount in the customer's month (notices.spend).
COUNTED = MonthSpend("2026-11", Decimal("100.00"))


def declined(reason: str = "card_declined") -> ChargeResult:
    return ChargeResult(ChargeStatus.FAILED, "pi_declined", reason, "Your card was declined.", True)


def with_fallback(method: PaymentMethod | None) -> TopUp:
    return replace(stripe_topup(card=CARD), partner_id=PARTNER, fallback_method=method)


def partner(amount: str) -> Wallet:
    return Wallet(PARTNER, balance=Balance(Decimal(amount), "USD", T0, None, "ev-partner"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def store_with(clock: FakeClock, topup: TopUp, *wallets: Wallet) -> MemoryChargeStore:
    store = MemoryChargeStore(clock)
    store.claim(topup)
    store.wallets[topup.customer_id] = Wallet(topup.customer_id, card=CARD, month=COUNTED)
    store.wallets.update((w.customer_id, w) for w in wallets)
    return store


async def settle(store: MemoryChargeStore, clock: FakeClock, answer: ChargeResult) -> None:
    gateway = ScriptedGateway(clock, charges=[answer])
    assert await Charger(store, gateway, clock, TOPICS).run_once() == 1
    assert gateway.kinds() == ["charge"]


def by_topic(store: MemoryChargeStore) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in store.events():
        out.setdefault(event["_topic"], []).append(event)
    return out


def spent(store: MemoryChargeStore) -> Decimal:
    month = store.wallets["cust-1"].month
    assert month is not None
    return month.spent


async def test_a_declined_card_falls_back_to_the_partner(clock: FakeClock) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    store = store_with(clock, topup, partner("500.00"))

    await settle(store, clock, declined())

    events = by_topic(store)
    [credit] = events[TOPICS.credit_issued]
    assert TOPICS.top_up_failed not in events  # the card's failure is not published
    assert credit["event_id"] == output_event_id("cust-1", DAY, "credit-issued|master_account")
    assert (credit["payment_method"], credit["fallback_from"]) == ("master_account", "stripe")
    assert (credit["funding_source"], credit["partner_id"]) == ("master_account", PARTNER)
    assert (credit["amount"], credit["amount_mode"]) == ("100.00", "fixed")
    row = store.row(topup)
    assert (row.phase, row.result, row.reason) == ("done", "credit_issued", None)
    assert row.payment_intent_id == "pi_declined"  # the card's PaymentIntent stays on the key
    # The partner's wallet holds the credit reserved under the fallback's event id.
    [reserved] = store.wallets[PARTNER].credits_out
    assert (reserved.event_id, reserved.amount) == (credit["event_id"], Decimal("100.00"))
    assert spent(store) == Decimal("100.00")  # the fallback succeeded: still counted
    # The card itself failed hard: paused, and its owner hears of it.
    assert store.paused == [("cust-1", "pm_cust-1")]
    [notice] = events[TOPICS.auto_topup_notice]
    assert (notice["type"], notice["period"], notice["reason"]) == (
        "stripe_paused",
        DAY.isoformat(),
        "card_declined",
    )


async def test_a_partner_without_funds_fails_once_naming_both(clock: FakeClock) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    store = store_with(clock, topup, partner("40.00"))

    await settle(store, clock, declined("insufficient_funds"))

    events = by_topic(store)
    assert TOPICS.credit_issued not in events
    [failed] = events[TOPICS.top_up_failed]
    assert failed["event_id"] == output_event_id("cust-1", DAY, "top-up-failed|master_account")
    assert (failed["payment_method"], failed["fallback_from"]) == ("master_account", "stripe")
    assert failed["reason"] == "partner_insufficient_funds"
    assert "stripe failed (insufficient_funds: Your card was declined.)" in failed["detail"]
    assert f"partner {PARTNER} can cover 40.00" in failed["detail"]
    row = store.row(topup)
    assert (row.result, row.reason) == ("failed", "partner_insufficient_funds")
    assert store.wallets[PARTNER].credits_out == ()
    assert spent(store) == Decimal("0.00")  # both failed: the amount is given back


async def test_a_partner_never_seen_fails_with_its_balance_unknown(clock: FakeClock) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    store = store_with(clock, topup)  # no wallet of the partner yet

    await settle(store, clock, declined())

    [failed] = by_topic(store)[TOPICS.top_up_failed]
    assert failed["reason"] == "partner_balance_unknown"
    assert spent(store) == Decimal("0.00")


async def test_a_cheque_tt_fallback_requests_an_invoice(clock: FakeClock) -> None:
    topup = with_fallback(PaymentMethod.CHEQUE_TT)
    store = store_with(clock, topup)

    await settle(store, clock, declined("expired_card"))

    events = by_topic(store)
    [invoice] = events[TOPICS.invoice_requested]
    assert invoice["event_id"] == output_event_id("cust-1", DAY, "invoice-requested|cheque_tt")
    assert (invoice["payment_method"], invoice["fallback_from"]) == ("cheque_tt", "stripe")
    assert store.row(topup).result == "invoice_requested"
    [opened] = store.open_invoices.values()
    assert (opened.invoice_request_id, opened.customer_id, opened.business_date) == (
        invoice["event_id"],
        "cust-1",
        DAY,
    )
    assert (opened.amount, opened.currency, opened.requested_at) == (
        Decimal("100.00"),
        "USD",
        T0,
    )
    assert spent(store) == Decimal("100.00")


async def test_a_temporary_decline_falls_back_without_pausing(clock: FakeClock) -> None:
    topup = with_fallback(PaymentMethod.CHEQUE_TT)
    store = store_with(clock, topup)

    await settle(store, clock, declined("try_again_later"))

    events = by_topic(store)
    assert len(events[TOPICS.invoice_requested]) == 1
    assert TOPICS.auto_topup_notice not in events
    assert store.paused == []


async def test_a_hard_failure_without_fallback_gives_back_and_notices_once(
    clock: FakeClock,
) -> None:
    topup = with_fallback(None)
    store = store_with(clock, topup)

    await settle(store, clock, declined("lost_card"))

    events = by_topic(store)
    [failed] = events[TOPICS.top_up_failed]
    assert failed["event_id"] == output_event_id("cust-1", DAY, "top-up-failed")
    assert "fallback_from" not in failed
    assert spent(store) == Decimal("0.00")
    [notice] = events[TOPICS.auto_topup_notice]
    assert notice["event_id"] == notice_event_id("cust-1", "stripe_paused", DAY.isoformat())
    assert store.wallets["cust-1"].stripe_paused
    # The same settlement decided again (another worker, an operator) queues the same notice.
    again = charge_outcome(
        TOPICS, PendingCharge(topup, 1, None, T0), declined("lost_card"), T0, wallets={}
    )
    assert [n.dedupe_key for n in again.notices] == [notice["event_id"]]


async def test_a_temporary_decline_without_fallback_gives_back_without_notice(
    clock: FakeClock,
) -> None:
    store = store_with(clock, with_fallback(None))

    await settle(store, clock, declined("processing_error"))

    assert list(by_topic(store)) == [TOPICS.top_up_failed]
    assert spent(store) == Decimal("0.00")
    assert not store.wallets["cust-1"].stripe_paused


async def test_a_charge_that_succeeds_stays_counted(clock: FakeClock) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    store = store_with(clock, topup, partner("500.00"))

    await settle(store, clock, ChargeResult(ChargeStatus.SUCCEEDED, "pi_ok"))

    [credit] = by_topic(store)[TOPICS.credit_issued]
    assert (credit["funding_source"], credit["payment_method"]) == ("stripe", "stripe")
    assert spent(store) == Decimal("100.00")
    assert store.wallets[PARTNER].credits_out == ()


async def test_a_charge_already_settled_writes_nothing(clock: FakeClock) -> None:
    topup = with_fallback(PaymentMethod.MASTER_ACCOUNT)
    store = store_with(clock, topup, partner("500.00"))
    [charge] = await store.lease(1, 60.0, T0)
    store.row(topup).phase = "done"  # another worker settled it first

    assert await store.finish(charge, lambda _: pytest.fail("decided a settled charge")) is None
    assert store.outbox == {}


def test_the_partners_wallet_is_locked_only_for_a_master_account_fallback() -> None:
    assert charge_wallets(with_fallback(PaymentMethod.MASTER_ACCOUNT)) == ["cust-1", PARTNER]
    assert charge_wallets(with_fallback(PaymentMethod.CHEQUE_TT)) == ["cust-1"]
    assert charge_wallets(with_fallback(None)) == ["cust-1"]
    # In customer_id order, as the batch handler locks them.
    early = replace(with_fallback(PaymentMethod.MASTER_ACCOUNT), partner_id="a-partner")
    assert charge_wallets(early) == ["a-partner", "cust-1"]


async def test_no_notice_when_newer_card_details_are_on_record(clock: FakeClock) -> None:
    topup = with_fallback(None)
    store = store_with(clock, topup)
    store.wallets["cust-1"] = replace(store.wallets["cust-1"], card=Card("cus_cust-1", "pm_new"))

    await settle(store, clock, declined("lost_card"))

    assert list(by_topic(store)) == [TOPICS.top_up_failed]
    assert not store.wallets["cust-1"].stripe_paused
