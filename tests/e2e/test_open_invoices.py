"""One open invoice at a time (contract v2, `max_open_invoices`), `invoice-status-changed`, and
the `invoice_overdue` notice, through the running service. Events are dated from the service's
pinned clock (AUTO_TOPUP_TEST_CLOCK may move it): never from the host's."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from service.contract.codec import notice_event_id, output_event_id
from tests.cli_tools import run_cli
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, pinned_offset, service_now
from tests.factories import eid, iso
from tests.kafka_tools import TopicReader
from tests.service_process import ServiceProcess, Topics

DAY = timedelta(days=1)
OVERDUE_DAYS = 7
READ = ("INVOICE_REQUESTED", "TOP_UP_FAILED", "AUTO_TOPUP_NOTICE", "AUTO_TOPUP_DEAD_LETTER")


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC (AUTO_TOPUP_TEST_CLOCK) today or yesterday."""
    return pinned_offset()


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    # The overdue worker looks often, so that a test sees its rounds soon.
    return {**service_env, "AUTO_TOPUP_INVOICE_OVERDUE_INTERVAL_SECONDS": "0.2"}


class InvoiceFlow(Flow):
    """Flow, with invoice statuses in and notices out, and a flush that covers statuses too."""

    async def status(self, customer: str, invoice_id: str, status: str, at: datetime) -> None:
        body = {
            "event_id": eid(),
            "occurred_at": iso(at),
            "customer_id": customer,
            "invoice_request_id": invoice_id,
            "status": status,
        }
        await self.send("INVOICE_STATUS_CHANGED", body, customer)

    async def flush(self, customer: str) -> None:
        """Waits until every record sent so far for this customer is processed: a marker on
        each input topic has come out of the dead-letter topic."""
        markers = []
        for name in ("SETTINGS_UPDATED", "WALLET_BALANCE_CHANGED", "INVOICE_STATUS_CHANGED"):
            marker = f"flush marker {uuid.uuid4()}".encode()
            markers.append(marker)
            await self.send(name, marker, customer)
        await self.reader.wait_for(
            lambda rs: all(any(r.value == m for r in rs) for m in markers),
            what=f"flush markers of {customer}",
        )
        await self.reader.drain()


@pytest.fixture
async def flow(
    infra: Infra, topics: Topics, service: ServiceProcess, clock_offset: float
) -> AsyncIterator[InvoiceFlow]:
    async with TopicReader(infra.kafka, *(topics[n] for n in READ)) as reader:
        yield InvoiceFlow(infra, topics, reader, clock_offset)


async def _first_invoice(flow: InvoiceFlow, customer: str, at: datetime) -> dict[str, Any]:
    """Settings with max_open_invoices 1, then a low balance at `at`: its invoice."""
    await flow.settings(customer, version=1, max_open_invoices=1, at=at - timedelta(minutes=5))
    await flow.flush(customer)
    await flow.balance(customer, "5.00", sequence=1, at=at)
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    assert invoice["event_id"] == output_event_id(customer, at.date(), "invoice-requested")
    return invoice


async def test_no_second_invoice_while_one_is_open_and_the_next_after_it_is_paid(
    flow: InvoiceFlow, service_env: dict[str, str]
) -> None:
    customer = customer_id("open")
    now = flow.now()
    first = await _first_invoice(flow, customer, now - DAY)

    # The next business day: due again, but suppressed (invoice_open): no invoice.
    await flow.balance(customer, "4.00", sequence=2, at=now - timedelta(minutes=3))
    await flow.flush(customer)
    assert len(flow.out("INVOICE_REQUESTED", customer)) == 1
    # explain shows the open invoice (and the decision it caused)
    report = json.loads((await run_cli(service_env, "explain", customer, "--json")).ok().out)
    (shown,) = report["open_invoices"]
    assert (shown["invoice_request_id"], shown["status"]) == (first["event_id"], "requested")
    assert (shown["amount"], shown["business_date"]) == ("100.00", first["business_date"])
    assert ("suppressed", "invoice_open") in {
        (d["outcome"], d["reason"]) for d in report["decisions"]
    }
    text = (await run_cli(service_env, "explain", customer, columns=200)).ok().out
    assert "Open invoices" in text
    assert first["event_id"] in text

    # Paid: the close itself requests nothing...
    await flow.status(customer, first["event_id"], "paid", now - timedelta(minutes=2))
    await flow.flush(customer)
    assert len(flow.out("INVOICE_REQUESTED", customer)) == 1
    # ...the next low balance of the same business day does (the suppression used no day).
    await flow.balance(customer, "3.00", sequence=3, at=now - timedelta(minutes=1))
    invoices = await flow.wait_out("INVOICE_REQUESTED", customer, 2)
    assert invoices[1]["event_id"] == output_event_id(customer, now.date(), "invoice-requested")
    assert invoices[1]["business_date"] == now.date().isoformat()
    await flow.flush(customer)
    assert len(flow.out("INVOICE_REQUESTED", customer)) == 2
    assert flow.dead(customer) == []
    assert flow.out("TOP_UP_FAILED", customer) == []
    report = json.loads((await run_cli(service_env, "explain", customer, "--json")).ok().out)
    assert [i["invoice_request_id"] for i in report["open_invoices"]] == [invoices[1]["event_id"]]


async def test_an_invoice_open_too_long_gets_one_overdue_notice(
    flow: InvoiceFlow, service: ServiceProcess, service_env: dict[str, str], clock_offset: float
) -> None:
    customer, other = customer_id("overdue"), customer_id("later")
    requested_at = flow.now()
    invoice = await _first_invoice(flow, customer, requested_at - timedelta(minutes=1))
    await flow.flush(customer)
    assert flow.out("AUTO_TOPUP_NOTICE", customer) == []  # not overdue yet
    assert service.stop() == 0, "\n".join(service.lines[-30:])

    # Eight days on (the service's clock), the worker notices it: once.
    later_offset = clock_offset + (OVERDUE_DAYS + 1) * DAY.total_seconds()
    later = ServiceProcess({**service_env, "AUTO_TOPUP_CLOCK_OFFSET_SECONDS": repr(later_offset)})
    later.start()
    try:
        (notice,) = await flow.wait_out("AUTO_TOPUP_NOTICE", customer)
        assert notice == {
            "event_id": notice_event_id(customer, "invoice_overdue", invoice["business_date"]),
            "customer_id": customer,
            "type": "invoice_overdue",
            "period": invoice["business_date"],
            "emitted_at": notice["emitted_at"],
            "currency": "USD",
            "invoice_request_id": invoice["event_id"],
            "amount": invoice["amount"],
            "open_days": OVERDUE_DAYS + 1,
        }
        # Another customer's invoice, requested on this later clock.
        later_flow = InvoiceFlow(flow.infra, flow.topics, flow.reader, later_offset)
        other_invoice = await _first_invoice(later_flow, other, service_now(later_offset))
        assert later.stop() == 0, "\n".join(later.lines[-30:])
    finally:
        if later.running:
            later.stop()

    # Eight days later still: the other invoice is overdue now, and its notice comes from a
    # round that finds the first invoice noticed already.
    latest_offset = later_offset + (OVERDUE_DAYS + 1) * DAY.total_seconds()
    latest = ServiceProcess({**service_env, "AUTO_TOPUP_CLOCK_OFFSET_SECONDS": repr(latest_offset)})
    latest.start()
    try:
        (other_notice,) = await flow.wait_out("AUTO_TOPUP_NOTICE", other)
        assert other_notice["invoice_request_id"] == other_invoice["event_id"]
        await flow.flush(customer)
        assert len(flow.out("AUTO_TOPUP_NOTICE", customer)) == 1
        assert latest.stop() == 0, "\n".join(latest.lines[-30:])
    finally:
        if latest.running:
            latest.stop()
