"""Online payment by Stripe, through localstripe: the real stripe SDK over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, online_top_up, pinned_offset
from tests.stripe_tools import (
    DECLINED_ON_CHARGE,
    GOOD,
    NEEDS_AUTHENTICATION,
    payment_intent,
    saved_card,
)


@pytest.fixture
def stripe_base(infra: Infra) -> str:
    if not infra.stripe_api_base:
        pytest.fail("STRIPE_API_BASE (localstripe) is not set: run `make test`", pytrace=False)
    return infra.stripe_api_base


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK): far from
    the day boundary whatever the hour the tests run at, and behind the host's clock (so that
    PostgreSQL finds the charges due at once); every event is dated from it (`flow.now()`)."""
    return pinned_offset()


@pytest.mark.parametrize(
    ("currency", "trigger", "threshold", "low", "minor"),
    [
        ("USD", "150.00", "20.00", "19.50", 15000),
        ("JPY", "5000", "1000", "999", 5000),
        ("KWD", "12.340", "2.000", "1.999", 12340),
    ],
)
async def test_card_is_charged_off_session_in_minor_units(
    flow: Flow, stripe_base: str, currency: str, trigger: str, threshold: str, low: str, minor: int
) -> None:
    customer = customer_id()
    card = saved_card(stripe_base, GOOD)
    await flow.settings(
        customer, **online_top_up(card, trigger=trigger, threshold=threshold, currency=currency)
    )
    await flow.balance(customer, low, currency=currency)
    (credit,) = await flow.wait_out("CREDIT_ISSUED", customer)
    assert credit["funding_source"] == "stripe"
    assert credit["payment_method"] == "stripe"
    assert credit["amount"] == trigger
    assert "partner_id" not in credit
    intent = payment_intent(stripe_base, credit["stripe_payment_intent_id"])
    assert intent.status == "succeeded"
    assert (intent.amount, intent.currency) == (minor, currency.lower())
    assert (intent.customer, intent.payment_method) == card
    assert intent.metadata["daily_key"] == credit["idempotency_key"]
    # A second shortfall the same day is suppressed: no second charge.
    await flow.balance(customer, "0", currency=currency)
    await flow.flush(customer)
    assert len(flow.out("CREDIT_ISSUED", customer)) == 1
    assert flow.out("TOP_UP_FAILED", customer) == []


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (DECLINED_ON_CHARGE, "card_declined"),
        (NEEDS_AUTHENTICATION, "authentication_required"),
    ],
)
async def test_hard_failure_is_published_once_and_pauses_the_card(
    flow: Flow, stripe_base: str, number: str, reason: str
) -> None:
    customer = customer_id()
    now = flow.now()
    yesterday = now - timedelta(days=1)
    bad = saved_card(stripe_base, number)
    await flow.settings(customer, at=yesterday - timedelta(minutes=1), **online_top_up(bad))
    await flow.balance(customer, "5.00", at=yesterday, sequence=1)
    (failed,) = await flow.wait_out("TOP_UP_FAILED", customer)
    assert failed["reason"] == reason
    assert failed["business_date"] == yesterday.date().isoformat()
    assert failed["payment_method"] == "stripe"
    # Today: due again, but the dead card is paused until new card details arrive.
    await flow.balance(customer, "4.00", at=now - timedelta(seconds=2), sequence=2)
    await flow.flush(customer)
    assert flow.out("CREDIT_ISSUED", customer) == []
    assert len(flow.out("TOP_UP_FAILED", customer)) == 1
    # The customer tops up online with a good card: the next shortfall is charged on it.
    good = saved_card(stripe_base, GOOD)
    await flow.settings(customer, at=now - timedelta(seconds=1), **online_top_up(good))
    await flow.flush(customer)
    await flow.balance(customer, "3.00", at=now, sequence=3)
    (credit,) = await flow.wait_out("CREDIT_ISSUED", customer)
    assert credit["business_date"] == now.date().isoformat()
    assert (
        payment_intent(stripe_base, credit["stripe_payment_intent_id"]).payment_method == (good[1])
    )


async def test_finance_app_cannot_change_stripe_amounts(flow: Flow, stripe_base: str) -> None:
    customer = customer_id()
    card = saved_card(stripe_base, GOOD)
    now = flow.now()
    await flow.settings(
        customer,
        at=now - timedelta(seconds=9),
        version=1,
        **online_top_up(card, trigger="100.00", threshold="10.00"),
    )
    locked = await flow.settings(
        customer,
        at=now - timedelta(seconds=8),
        version=2,
        method="stripe",
        trigger="999.00",
        threshold="500.00",
    )
    await flow.balance(customer, "50.00", at=now - timedelta(seconds=7))
    await flow.flush(customer)
    (dead,) = flow.dead(customer)
    assert dead.headers["dlq_reason"] == b"stripe_settings_locked"
    assert dead.json() == locked
    # Stored settings unchanged: 50.00 is above the Stripe threshold of 10.00.
    assert flow.out("CREDIT_ISSUED", customer) == []
    # The Finance app may still turn auto-trigger off (same amounts), and switch away.
    await flow.settings(
        customer,
        at=now - timedelta(seconds=6),
        version=3,
        method="stripe",
        trigger="100.00",
        threshold="10.00",
        auto=False,
    )
    await flow.balance(customer, "1.00", at=now - timedelta(seconds=5))
    await flow.flush(customer)
    assert flow.out("CREDIT_ISSUED", customer) == []
    assert len(flow.dead(customer)) == 1


async def test_finance_app_may_choose_stripe_only_with_a_card(flow: Flow) -> None:
    customer = customer_id()
    body = await flow.settings(customer, method="stripe")
    await flow.flush(customer)
    (dead,) = flow.dead(customer)
    assert dead.headers["dlq_reason"] == b"stripe_card_missing"
    assert dead.json() == body
