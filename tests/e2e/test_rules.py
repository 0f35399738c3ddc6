"""Settings and balance rules, as contract events through the running service."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import Flow, customer_id, pinned_offset


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK): far from
    midnight in UTC and in Asia/Kolkata (18:30 UTC), whatever the hour the tests run at; every
    event is dated from it (`flow.now()`)."""
    return pinned_offset()


async def test_auto_trigger_off_never_triggers_and_turning_it_on_does(flow: Flow) -> None:
    customer = customer_id()
    now = flow.now()
    await flow.settings(customer, auto=False, at=now - timedelta(seconds=10), version=1)
    await flow.balance(customer, "-500.00", at=now - timedelta(seconds=9), sequence=1)
    await flow.flush(customer)
    assert flow.out("INVOICE_REQUESTED", customer) == []
    on = await flow.settings(customer, auto=True, at=now - timedelta(seconds=8), version=2)
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    assert invoice["trigger_event_id"] == on["event_id"]
    assert invoice["balance_at_trigger"] == "-500.00"


async def test_stale_settings_version_is_a_no_op(flow: Flow) -> None:
    customer = customer_id()
    now = flow.now()
    await flow.settings(customer, threshold="10.00", at=now - timedelta(seconds=10), version=5)
    await flow.flush(customer)
    # An older version raising the threshold changes nothing, and is not dead-lettered.
    await flow.settings(customer, threshold="1000.00", at=now - timedelta(seconds=9), version=4)
    await flow.balance(customer, "500.00", at=now - timedelta(seconds=8))
    await flow.flush(customer)
    assert flow.out("INVOICE_REQUESTED", customer) == []
    assert flow.dead(customer) == []


async def test_raising_the_threshold_over_the_balance_triggers(flow: Flow) -> None:
    customer = customer_id()
    now = flow.now()
    await flow.settings(customer, threshold="10.00", at=now - timedelta(seconds=10), version=1)
    await flow.balance(customer, "40.00", at=now - timedelta(seconds=9), sequence=1)
    await flow.flush(customer)
    raised = await flow.settings(
        customer, threshold="50.00", at=now - timedelta(seconds=8), version=2
    )
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    assert invoice["trigger_event_id"] == raised["event_id"]
    assert invoice["limit_threshold"] == "50.00"


async def test_stale_balance_sequence_is_a_no_op(flow: Flow) -> None:
    customer = customer_id()
    now = flow.now()
    await flow.settings(customer, threshold="10.00", at=now - timedelta(seconds=10))
    await flow.balance(customer, "80.00", at=now - timedelta(seconds=5), sequence=9)
    await flow.flush(customer)
    await flow.balance(customer, "1.00", at=now - timedelta(seconds=4), sequence=8)
    await flow.flush(customer)
    assert flow.out("INVOICE_REQUESTED", customer) == []


async def test_equal_balance_triggers_and_one_per_business_day(flow: Flow) -> None:
    customer = customer_id()
    now = flow.now()
    await flow.settings(
        customer,
        threshold="10.00",
        trigger="75.00",
        at=now - timedelta(days=1, seconds=10),
        timezone="Asia/Kolkata",
    )
    await flow.flush(customer)  # the topics are not ordered with each other
    yesterday = now - timedelta(days=1)
    await flow.balance(customer, "10.00", at=yesterday, sequence=1)
    await flow.balance(customer, "9.00", at=yesterday + timedelta(seconds=1), sequence=2)
    await flow.balance(customer, "8.00", at=now, sequence=3)
    await flow.balance(customer, "7.00", at=now + timedelta(seconds=1), sequence=4)
    await flow.flush(customer)
    invoices = flow.out("INVOICE_REQUESTED", customer)
    days = sorted(i["business_date"] for i in invoices)
    kolkata = ZoneInfo("Asia/Kolkata")
    assert days == sorted(
        {
            yesterday.astimezone(kolkata).date().isoformat(),
            now.astimezone(kolkata).date().isoformat(),
        }
    )
    assert {i["balance_at_trigger"] for i in invoices} == {"10.00", "8.00"}


async def test_guards_future_and_old_days(flow: Flow) -> None:
    customer = customer_id()
    now = flow.now()
    await flow.settings(customer, at=now - timedelta(days=40))
    future = await flow.balance(customer, "1.00", at=now + timedelta(minutes=10), sequence=9)
    await flow.balance(customer, "1.00", at=now - timedelta(days=30), sequence=1)
    await flow.flush(customer)
    (dead,) = flow.dead(customer)
    assert dead.headers["dlq_reason"] == b"future_dated"
    assert dead.json() == future
    assert flow.out("INVOICE_REQUESTED", customer) == []


@pytest.mark.parametrize(
    ("fields", "reason", "words"),
    [
        ({"trigger": "10.001"}, b"invalid_amount_scale", b"trigger_amount"),
        ({"trigger": "10.5", "currency": "JPY"}, b"invalid_amount_scale", b"JPY"),
        ({"timezone": "Mars/Olympus"}, b"invalid_timezone", b"Mars/Olympus"),
        ({"method": "master_account"}, b"schema_violation", b"partner_id"),
        ({"trigger": "0"}, b"schema_violation", b"trigger_amount"),
        ({"method": "bank_transfer"}, b"schema_violation", b"payment_method"),
    ],
)
async def test_invalid_settings_are_dead_lettered_with_a_reason(
    flow: Flow, fields: dict[str, object], reason: bytes, words: bytes
) -> None:
    customer = customer_id()
    body = await flow.settings(customer, **fields)
    await flow.balance(customer, "-100.00")
    await flow.flush(customer)
    (dead,) = flow.dead(customer)
    assert dead.headers["dlq_reason"] == reason
    assert words in dead.headers["dlq_detail"]
    assert dead.json() == body
    assert flow.out("INVOICE_REQUESTED", customer) == []  # nothing stored, nothing triggered
