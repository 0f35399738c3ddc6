"""Contract v2's money rules through the running service, the real broker, database and Stripe
fake: the sequences with which v1 moved money wrongly, each with its safe outcome asserted.

The service's clock is pinned (`clock_offset`: 10:00 UTC today or yesterday, or
AUTO_TOPUP_TEST_CLOCK; the timezone test at a time of day of its own), and every event is dated
from it, so that no assertion depends on the hour or the date the test runs at."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import asyncpg
import pytest

from service.contract.codec import output_event_id
from service.domain.calendar import business_date
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, online_top_up, pinned_offset
from tests.pg_tools import connect
from tests.stripe_tools import GOOD, payment_intent, saved_card


@pytest.fixture
def stripe_base(infra: Infra) -> str:
    if not infra.stripe_api_base:
        pytest.fail("STRIPE_API_BASE (localstripe) is not set: run `make test`", pytrace=False)
    return infra.stripe_api_base


@pytest.fixture
def clock_offset(request: pytest.FixtureRequest) -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), or at the
    time of day (UTC) a test asks for (indirect parametrization): never at the host's hour,
    never ahead of the host's clock (which would hold the Stripe charges back)."""
    at: time | None = getattr(request, "param", None)
    return pinned_offset(at)


async def _daily_keys(database_url: str, customer: str) -> list[asyncpg.Record]:
    """The customer's daily keys: a claim commits with the decision that made it, so once the
    input is flushed these are final, whatever the charger has done with them yet."""
    conn = await connect(database_url)
    try:
        return await conn.fetch(
            "SELECT business_date, payment_method, amount::text FROM daily_keys "
            "WHERE customer_id = $1 ORDER BY business_date",
            customer,
        )
    finally:
        await conn.close()


async def _round_trip(flow: Flow, stripe_base: str, back: tuple[str, str]) -> tuple[str, datetime]:
    """A card saved with 50.00/10.00 in an online top-up; the Finance app switches to cheque
    with 5000.00/4000.00, then back to stripe with `back` (trigger, threshold)."""
    customer = customer_id()
    card = saved_card(stripe_base, GOOD)
    now = flow.now()
    await flow.settings(
        customer,
        **online_top_up(card, trigger="50.00", threshold="10.00"),
        at=now - timedelta(seconds=30),
    )
    await flow.settings(
        customer,
        method="cheque_tt",
        trigger="5000.00",
        threshold="4000.00",
        at=now - timedelta(seconds=20),
    )
    await flow.settings(
        customer,
        method="stripe",
        trigger=back[0],
        threshold=back[1],
        at=now - timedelta(seconds=10),
    )
    return customer, now


async def test_a_round_trip_through_cheque_never_charges_the_card_another_amount(
    flow: Flow, stripe_base: str, database_url: str
) -> None:
    """Sequence 1: online top-up 50.00/10.00; the Finance app sends cheque 5000/4000, then
    stripe 5000/4000: the second is dead-lettered `stripe_settings_locked`, the stored settings
    stay Cheque/TT, and a balance of 3999 raises an invoice, never a 5000.00 card charge."""
    customer, now = await _round_trip(flow, stripe_base, back=("5000.00", "4000.00"))
    await flow.flush(customer)
    (dead,) = flow.dead(customer)
    assert dead.headers["dlq_reason"] == b"stripe_settings_locked"
    assert b"50.00 / 10.00 USD" in dead.headers["dlq_detail"]

    await flow.balance(customer, "3999.00", at=now)
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    assert invoice["payment_method"] == "cheque_tt"
    assert invoice["amount"] == "5000.00"
    await flow.flush(customer)
    assert flow.out("CREDIT_ISSUED", customer) == []
    keys = await _daily_keys(database_url, customer)
    assert [(k["payment_method"], k["amount"]) for k in keys] == [("cheque_tt", "5000.00")]


async def test_the_finance_app_may_choose_stripe_again_with_the_cards_amounts(
    flow: Flow, stripe_base: str
) -> None:
    customer, now = await _round_trip(flow, stripe_base, back=("50.00", "10.00"))
    await flow.balance(customer, "9.00", at=now)
    (credit,) = await flow.wait_out("CREDIT_ISSUED", customer)
    assert credit["amount"] == "50.00"
    assert payment_intent(stripe_base, credit["stripe_payment_intent_id"]).amount == 5000
    assert flow.dead(customer) == []


async def partner_with(flow: Flow, partner: str, amount: str, at: datetime, seq: int) -> None:
    await flow.balance(partner, amount, at=at, sequence=seq)
    await flow.flush(partner)


async def master_account_customers(flow: Flow, partner: str, *customers: str) -> None:
    for customer in customers:
        await flow.settings(
            customer,
            method="master_account",
            partner_id=partner,
            trigger="60.00",
            threshold="10.00",
        )
        await flow.flush(customer)


async def test_a_partner_is_never_overdrawn_while_the_wallet_service_lags(flow: Flow) -> None:
    """Sequence 2: the partner holds 100; A gets 60; the partner's wallet changes for another
    reason (99) before the wallet service applied A's credit: B gets
    `partner_insufficient_funds`. Once a partner balance names A's credit in `caused_by`, the
    next customer (C) is funded again."""
    partner, a, b, c = customer_id("partner"), customer_id(), customer_id(), customer_id()
    now = flow.now()
    await partner_with(flow, partner, "100.00", now - timedelta(seconds=40), 1)
    await master_account_customers(flow, partner, a, b, c)

    await flow.balance(a, "1.00", at=now - timedelta(seconds=30))
    (credit_a,) = await flow.wait_out("CREDIT_ISSUED", a)
    assert credit_a["amount"] == "60.00"

    # The partner's wallet changes for another reason; the wallet service has not applied A's
    # credit yet (no caused_by): 99 - 60 = 39 is all it can cover.
    await partner_with(flow, partner, "99.00", now - timedelta(seconds=20), 2)
    await flow.balance(b, "1.00", at=now - timedelta(seconds=15))
    (failed,) = await flow.wait_out("TOP_UP_FAILED", b)
    assert failed["reason"] == "partner_insufficient_funds"
    assert flow.out("CREDIT_ISSUED", b) == []

    # The wallet service applies A's credit: 99 - 60 = 39, and says which credit it was.
    await flow.balance(
        partner, "39.00", at=now - timedelta(seconds=10), sequence=3, caused_by=credit_a["event_id"]
    )
    # Then the reseller tops up its own wallet: 139, all of it available.
    await partner_with(flow, partner, "139.00", now - timedelta(seconds=5), 4)
    await flow.balance(c, "1.00", at=now)
    (credit_c,) = await flow.wait_out("CREDIT_ISSUED", c)
    assert credit_c["partner_id"] == partner
    assert credit_a["event_id"] == output_event_id(
        a, business_date(now - timedelta(seconds=30), "UTC"), "credit-issued"
    )


def _etc_zone(offset_hours: int) -> str:
    """The IANA zone of a fixed whole-hour offset (Etc/GMT's sign is the other way round)."""
    return "Etc/GMT" if offset_hours == 0 else f"Etc/GMT{-offset_hours:+d}"


# The timezone test: zone X is UTC+8 and zone Y two hours ahead (UTC+10); the service's clock is
# pinned at 14:30 UTC, 22:30 in X and 00:30 the next date in Y, an hour and a half before X's
# day is over.
ZONE_X_HOURS = 8
LATE_IN_X = time(14, 30)


@pytest.mark.parametrize("clock_offset", [LATE_IN_X], indirect=True, ids=["late-in-x"])
async def test_a_timezone_change_never_opens_a_second_day_early(
    flow: Flow, stripe_base: str, database_url: str
) -> None:
    """Sequence 3: the card is charged late in the customer's business day (zone X, where the
    service's clock reads 22:30); the Finance app then moves the customer to a zone Y two hours
    ahead, where it is already the next date; a low balance there must not charge the card
    again before X's day is over."""
    customer = customer_id()
    card = saved_card(stripe_base, GOOD)
    t1 = flow.now().replace(microsecond=0) - timedelta(seconds=60)
    zone_x, zone_y = _etc_zone(ZONE_X_HOURS), _etc_zone(ZONE_X_HOURS + 2)
    assert business_date(t1, zone_y) > business_date(t1, zone_x)

    fields = {"trigger": "50.00", "threshold": "10.00"}
    await flow.settings(
        customer, **online_top_up(card, **fields), timezone=zone_x, at=t1 - timedelta(seconds=5)
    )
    await flow.balance(customer, "5.00", at=t1)
    (credit,) = await flow.wait_out("CREDIT_ISSUED", customer)
    assert credit["business_date"] == business_date(t1, zone_x).isoformat()

    await flow.settings(
        customer, **online_top_up(card, **fields), timezone=zone_y, at=t1 + timedelta(seconds=10)
    )
    await flow.balance(customer, "4.00", at=t1 + timedelta(seconds=20))
    await flow.flush(customer)
    assert len(flow.out("CREDIT_ISSUED", customer)) == 1
    assert flow.out("TOP_UP_FAILED", customer) == []
    assert len(await _daily_keys(database_url, customer)) == 1


async def test_a_card_amount_below_stripes_minimum_is_refused_when_the_settings_arrive(
    flow: Flow, stripe_base: str
) -> None:
    customer = customer_id()
    card = saved_card(stripe_base, GOOD)
    await flow.settings(customer, **online_top_up(card, trigger="0.10", threshold="0.00"))
    await flow.balance(customer, "0.00")
    await flow.flush(customer)
    (dead,) = flow.dead(customer)
    assert dead.headers["dlq_reason"] == b"invalid_amount_for_card"
    assert b"minimum" in dead.headers["dlq_detail"]
    assert flow.out("CREDIT_ISSUED", customer) == []
    assert flow.out("TOP_UP_FAILED", customer) == []
