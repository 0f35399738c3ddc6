"""A declined card falls back to the partner's master account (contract v2 `fallback_method`):
the running service, localstripe, the real stripe SDK over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from service.contract.codec import notice_event_id, output_event_id
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, online_top_up, pinned_offset
from tests.kafka_tools import TopicReader
from tests.service_process import ServiceProcess, Topics
from tests.stripe_tools import DECLINED_ON_CHARGE, saved_card


@pytest.fixture
def stripe_base(infra: Infra) -> str:
    if not infra.stripe_api_base:
        pytest.fail("STRIPE_API_BASE (localstripe) is not set: run `make test`", pytrace=False)
    return infra.stripe_api_base


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK): every event
    is dated from it (`flow.now()`), a minute apart at most, so that they fall on one business
    day whatever the hour the tests run at."""
    return pinned_offset()


@pytest.fixture
async def flow(
    infra: Infra, topics: Topics, service: ServiceProcess, clock_offset: float
) -> AsyncIterator[Flow]:
    """The outputs, and the notices too."""
    names = (
        "INVOICE_REQUESTED",
        "CREDIT_ISSUED",
        "TOP_UP_FAILED",
        "AUTO_TOPUP_NOTICE",
        "AUTO_TOPUP_DEAD_LETTER",
    )
    async with TopicReader(infra.kafka, *(topics[n] for n in names)) as reader:
        yield Flow(infra, topics, reader, clock_offset)


async def test_a_declined_card_falls_back_to_the_master_account(
    flow: Flow, stripe_base: str
) -> None:
    partner, customer = customer_id("partner"), customer_id()
    now = flow.now()
    await flow.balance(partner, "500.00", at=now - timedelta(seconds=50), sequence=1)
    await flow.flush(partner)
    bad = saved_card(stripe_base, DECLINED_ON_CHARGE)
    await flow.settings(
        customer,
        at=now - timedelta(seconds=40),
        fallback_method="master_account",
        partner_id=partner,
        **online_top_up(bad),
    )
    await flow.balance(customer, "5.00", at=now - timedelta(seconds=30), sequence=1)

    (credit,) = await flow.wait_out("CREDIT_ISSUED", customer)
    day = (now - timedelta(seconds=30)).date()
    assert credit["business_date"] == day.isoformat()
    assert credit["event_id"] == output_event_id(
        customer, date.fromisoformat(credit["business_date"]), "credit-issued|master_account"
    )
    assert (credit["payment_method"], credit["fallback_from"]) == ("master_account", "stripe")
    assert (credit["funding_source"], credit["partner_id"]) == ("master_account", partner)
    assert (credit["amount"], credit["amount_mode"]) == ("100.00", "fixed")
    assert "stripe_payment_intent_id" not in credit
    assert credit["idempotency_key"] == f"{customer}/{day.isoformat()}"
    # One daily key: a later low balance that day is suppressed, and the card's failure was
    # never published.
    await flow.balance(customer, "4.00", at=now, sequence=2)
    await flow.flush(customer)
    assert len(flow.out("CREDIT_ISSUED", customer)) == 1
    assert flow.out("TOP_UP_FAILED", customer) == []
    assert flow.out("INVOICE_REQUESTED", customer) == []
    # The card itself was declined: Stripe top-ups pause, and the owner hears of it once.
    (notice,) = await flow.wait_out("AUTO_TOPUP_NOTICE", customer)
    assert (notice["type"], notice["period"], notice["reason"]) == (
        "stripe_paused",
        day.isoformat(),
        "card_declined",
    )
    assert notice["event_id"] == notice_event_id(customer, "stripe_paused", day.isoformat())
