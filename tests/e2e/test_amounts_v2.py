"""Contract v2's amounts through the running service, the real broker and database: amount
modes (`to_target`, `cover_gap`, in USD, JPY and KWD), `max_amount`, `monthly_cap` cutting an
amount and blocking one with its notices once each, a partner without funds falling back to an
invoice, and the Trigger Amount advisor's notice for a customer whose usage outgrows the Trigger
Amount (and none for one whose usage does not).

The service's clock reads the 15th of the month before the host's, at the pinned time of day
(10:00 UTC, or AUTO_TOPUP_TEST_CLOCK): yesterday and today are then always in one month, and
no assertion depends on the hour or the date the tests run at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from service.contract.codec import notice_event_id, output_event_id
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, pinned_time
from tests.kafka_tools import TopicReader
from tests.pg_tools import connect
from tests.service_process import ServiceProcess, Topics


def mid_previous_month(host_now: datetime) -> datetime:
    """The 15th of the month before `host_now`'s, at the pinned time of day (UTC)."""
    first = host_now.astimezone(UTC).date().replace(day=1)
    day = (first - timedelta(days=1)).replace(day=15)
    return datetime.combine(day, pinned_time(), UTC)


@pytest.fixture
def clock_offset() -> float:
    host_now = datetime.now(UTC)
    return (mid_previous_month(host_now) - host_now).total_seconds()


@pytest.fixture
async def flow(
    infra: Infra, topics: Topics, service: ServiceProcess, clock_offset: float
) -> AsyncIterator[Flow]:
    names = (
        "INVOICE_REQUESTED",
        "CREDIT_ISSUED",
        "TOP_UP_FAILED",
        "AUTO_TOPUP_NOTICE",
        "AUTO_TOPUP_DEAD_LETTER",
    )
    async with TopicReader(infra.kafka, *(topics[n] for n in names)) as reader:
        yield Flow(infra, topics, reader, clock_offset)


async def _daily_keys(database_url: str, customer: str) -> list[date]:
    conn: asyncpg.Connection = await connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT business_date FROM daily_keys WHERE customer_id = $1 ORDER BY 1", customer
        )
    finally:
        await conn.close()
    return [r["business_date"] for r in rows]


def _cheque(**v2: Any) -> dict[str, Any]:
    return {"method": "cheque_tt", "version": 1, **v2}


@pytest.mark.parametrize(
    ("currency", "settings", "balance", "amount"),
    [
        ("USD", {"amount_mode": "to_target", "target_balance": "500.00"}, "15.37", "484.63"),
        ("JPY", {"amount_mode": "to_target", "target_balance": "10000"}, "-250", "10250"),
        ("KWD", {"amount_mode": "to_target", "target_balance": "50.000"}, "9.999", "40.001"),
        ("USD", {"amount_mode": "cover_gap"}, "-350.00", "400.00"),
        ("JPY", {"amount_mode": "cover_gap"}, "-2300", "3000"),
        ("KWD", {"amount_mode": "cover_gap"}, "-320.250", "400.000"),
        ("USD", {"amount_mode": "to_target", "target_balance": "500.00", "max_amount": "200.00"},
         "15.37", "200.00"),
    ],
    ids=["to_target-USD", "to_target-JPY", "to_target-KWD", "cover_gap-USD", "cover_gap-JPY",
         "cover_gap-KWD", "max_amount-USD"],
)  # fmt: skip
async def test_amount_modes_in_each_currency(
    flow: Flow, currency: str, settings: dict[str, Any], balance: str, amount: str
) -> None:
    customer = customer_id()
    trigger = {"USD": "100.00", "JPY": "1000", "KWD": "100.000"}[currency]
    threshold = {"USD": "20.00", "JPY": "500", "KWD": "10.000"}[currency]
    await flow.settings(
        customer, currency=currency, trigger=trigger, threshold=threshold, **_cheque(**settings)
    )
    low = await flow.balance(customer, balance, currency=currency, sequence=1)
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    assert invoice["amount"] == amount
    assert invoice["amount_mode"] == settings["amount_mode"]
    assert invoice["balance_at_trigger"] == balance
    assert invoice["trigger_event_id"] == low["event_id"]
    assert "fallback_from" not in invoice


async def test_monthly_cap_cuts_an_amount_then_blocks_one_with_each_notice_once(
    flow: Flow, database_url: str
) -> None:
    customer = customer_id()
    now = flow.now()
    yesterday = now - timedelta(days=1)
    await flow.settings(
        customer, trigger="100.00", threshold="20.00", monthly_cap="150.00",
        at=yesterday - timedelta(minutes=5), **_cheque(),
    )  # fmt: skip
    await flow.balance(customer, "10.00", at=yesterday, sequence=1)
    await flow.wait_out("INVOICE_REQUESTED", customer)
    # Today: 50.00 is left of the month's cap; the top-up is cut to it (80% and 100% reached).
    await flow.balance(customer, "5.00", at=now - timedelta(minutes=2), sequence=2)
    first, cut = await flow.wait_out("INVOICE_REQUESTED", customer, 2)
    assert (first["amount"], cut["amount"]) == ("100.00", "50.00")
    assert cut["business_date"] == now.date().isoformat()
    # Another shortfall today: the day had its attempt; no notice comes twice.
    await flow.balance(customer, "4.00", at=now, sequence=3)
    await flow.flush(customer)
    assert len(flow.out("INVOICE_REQUESTED", customer)) == 2
    notices = flow.out("AUTO_TOPUP_NOTICE", customer)
    month = now.date().isoformat()[:7]
    assert sorted((n["type"], n["period"]) for n in notices) == [
        ("monthly_cap_reached", month),
        ("monthly_cap_warning", month),
    ]
    for n in notices:
        assert n["event_id"] == notice_event_id(customer, n["type"], month)
        assert (n["monthly_cap"], n["month_total"], n["currency"]) == ("150.00", "150.00", "USD")
    assert await _daily_keys(database_url, customer) == [yesterday.date(), now.date()]


async def test_monthly_cap_blocks_without_using_the_day(flow: Flow, database_url: str) -> None:
    customer = customer_id()
    now = flow.now()
    yesterday = now - timedelta(days=1)
    await flow.settings(
        customer, trigger="100.00", threshold="20.00", monthly_cap="100.00",
        at=yesterday - timedelta(minutes=5), **_cheque(),
    )  # fmt: skip
    await flow.balance(customer, "10.00", at=yesterday, sequence=1)
    await flow.wait_out("INVOICE_REQUESTED", customer)
    await flow.balance(customer, "8.00", at=now, sequence=2)
    await flow.flush(customer)
    assert len(flow.out("INVOICE_REQUESTED", customer)) == 1
    assert await _daily_keys(database_url, customer) == [yesterday.date()]
    kinds = sorted(n["type"] for n in flow.out("AUTO_TOPUP_NOTICE", customer))
    assert kinds == ["monthly_cap_reached", "monthly_cap_warning"]


async def test_a_partner_without_funds_falls_back_to_an_invoice(flow: Flow) -> None:
    customer, partner = customer_id(), customer_id("partner")
    now = flow.now()
    await flow.balance(partner, "30.00", at=now - timedelta(minutes=10), sequence=1)
    await flow.settings(
        customer, method="master_account", partner_id=partner, trigger="100.00",
        threshold="20.00", fallback_method="cheque_tt", version=1,
    )  # fmt: skip
    await flow.balance(customer, "10.00", at=now - timedelta(minutes=1), sequence=1)
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    day = now.date()
    assert invoice["event_id"] == output_event_id(customer, day, "invoice-requested|cheque_tt")
    assert invoice["payment_method"] == "cheque_tt"
    assert invoice["fallback_from"] == "master_account"
    assert invoice["idempotency_key"] == f"{customer}/{day.isoformat()}"
    assert invoice["amount"] == "100.00"
    # One attempt a day: a later shortfall the same day is suppressed.
    await flow.balance(customer, "2.00", at=now, sequence=2)
    await flow.flush(customer)
    assert len(flow.out("INVOICE_REQUESTED", customer)) == 1
    assert flow.out("TOP_UP_FAILED", customer) == []
    assert flow.out("CREDIT_ISSUED", customer) == []


async def test_a_partner_with_funds_pays_without_the_fallback(flow: Flow) -> None:
    customer, partner = customer_id(), customer_id("partner")
    now = flow.now()
    await flow.balance(partner, "300.00", at=now - timedelta(minutes=10), sequence=1)
    await flow.settings(
        customer, method="master_account", partner_id=partner, trigger="100.00",
        threshold="20.00", fallback_method="cheque_tt", version=1,
    )  # fmt: skip
    await flow.balance(customer, "10.00", at=now, sequence=1)
    (credit,) = await flow.wait_out("CREDIT_ISSUED", customer)
    assert credit["event_id"] == output_event_id(customer, now.date(), "credit-issued")
    assert "fallback_from" not in credit
    await flow.flush(customer)
    assert flow.out("INVOICE_REQUESTED", customer) == []


async def test_usage_outgrowing_the_trigger_amount_gets_one_notice(flow: Flow) -> None:
    outgrown, enough = customer_id(), customer_id()
    now = flow.now()
    yesterday = now - timedelta(days=1)
    for customer, trigger in ((outgrown, "100.00"), (enough, "1000.00")):
        await flow.settings(
            customer, trigger=trigger, threshold="50.00", at=yesterday - timedelta(hours=1),
            **_cheque(),
        )  # fmt: skip
        # Yesterday: 600.00 used; today: 360.00 used, then the balance is low.
        await flow.balance(customer, "1000.00", at=yesterday, sequence=1)
        await flow.balance(customer, "400.00", at=yesterday + timedelta(minutes=30), sequence=2)
        await flow.balance(customer, "40.00", at=now, sequence=3)
    await flow.wait_out("INVOICE_REQUESTED", outgrown)
    await flow.wait_out("INVOICE_REQUESTED", enough)
    (notice,) = await flow.wait_out("AUTO_TOPUP_NOTICE", outgrown)
    period = now.date().isoformat()
    assert notice == {
        "event_id": notice_event_id(outgrown, "trigger_amount_too_low", period),
        "customer_id": outgrown,
        "type": "trigger_amount_too_low",
        "period": period,
        "emitted_at": notice["emitted_at"],
        "currency": "USD",
        "trigger_amount": "100.00",
        "observed_daily_usage": "600.00",
        "recommended_trigger_amount": "600.00",
    }
    await flow.flush(enough)
    assert flow.out("AUTO_TOPUP_NOTICE", enough) == []
