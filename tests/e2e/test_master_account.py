"""Issue from the partner's master account."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.e2e.conftest import Flow, customer_id, pinned_offset


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK): every event
    is dated from it (`flow.now()`), so the partner's balance and the customers' fall on one
    business day whatever the hour the tests run at."""
    return pinned_offset()


async def test_credit_from_partner_then_insufficient_funds(flow: Flow) -> None:
    partner, first, second = customer_id("partner"), customer_id(), customer_id()
    now = flow.now()
    await flow.balance(partner, "150.00", at=now - timedelta(seconds=30), sequence=1)
    await flow.flush(partner)
    for customer in (first, second):
        await flow.settings(
            customer,
            method="master_account",
            partner_id=partner,
            trigger="100.00",
            threshold="10.00",
        )
    # Both customers fall due at the same moment: the partner can cover only one.
    await asyncio.gather(flow.balance(first, "2.00", at=now), flow.balance(second, "3.00", at=now))
    await flow.reader.wait_for(
        lambda _: (
            len(
                flow.out("CREDIT_ISSUED", first)
                + flow.out("CREDIT_ISSUED", second)
                + flow.out("TOP_UP_FAILED", first)
                + flow.out("TOP_UP_FAILED", second)
            )
            == 2
        ),
        what="two decisions",
    )
    credits = flow.out("CREDIT_ISSUED", first) + flow.out("CREDIT_ISSUED", second)
    failures = flow.out("TOP_UP_FAILED", first) + flow.out("TOP_UP_FAILED", second)
    assert len(credits) == 1
    assert len(failures) == 1
    assert credits[0]["funding_source"] == "master_account"
    assert credits[0]["partner_id"] == partner
    assert credits[0]["amount"] == "100.00"
    assert "stripe_payment_intent_id" not in credits[0]
    assert failures[0]["reason"] == "partner_insufficient_funds"
    assert failures[0]["payment_method"] == "master_account"


async def test_newer_partner_balance_funds_again(flow: Flow) -> None:
    partner, first, second = customer_id("partner"), customer_id(), customer_id()
    now = flow.now()
    await flow.balance(partner, "100.00", at=now - timedelta(seconds=30), sequence=1)
    for customer in (first, second):
        await flow.settings(
            customer,
            method="master_account",
            partner_id=partner,
            trigger="100.00",
            threshold="10.00",
        )
    await flow.flush(partner)
    await flow.balance(first, "1.00", at=now - timedelta(seconds=20))
    await flow.wait_out("CREDIT_ISSUED", first)
    # The reseller tops up its own wallet; the new balance funds the next customer.
    await flow.balance(partner, "500.00", at=now - timedelta(seconds=1), sequence=2)
    await flow.flush(partner)
    await flow.balance(second, "1.00", at=now)
    (credit,) = await flow.wait_out("CREDIT_ISSUED", second)
    assert credit["partner_id"] == partner


async def test_unknown_partner_balance_fails(flow: Flow) -> None:
    customer = customer_id()
    await flow.settings(customer, method="master_account", partner_id=customer_id("partner"))
    await flow.balance(customer, "0.00")
    (failed,) = await flow.wait_out("TOP_UP_FAILED", customer)
    assert failed["reason"] == "partner_balance_unknown"
    assert failed["detail"]
