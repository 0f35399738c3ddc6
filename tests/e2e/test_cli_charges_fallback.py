"""`auto-topup charges resolve --failed` on a top-up with a fallback method, against the running
service: the fallback goes on as after a declined card, and its event (not the card's failure)
is what the relay publishes.

The charge is put in 'needs_review' directly in the service's database (see
test_cli_charges.py); the clocks are pinned at 10:00 UTC today or yesterday
(AUTO_TOPUP_TEST_CLOCK), and every time is built from them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from service.contract.codec import output_event_id
from service.domain.model import PaymentMethod
from tests.e2e.conftest import Flow, customer_id, pinned_offset
from tests.e2e.test_cli_charges import _topup, charges, put_in_phase
from tests.pg_tools import close_pool, create_pool


@pytest.fixture
def clock_offset() -> float:
    return pinned_offset()


async def test_resolving_as_failed_requests_the_fallback_invoice(
    flow: Flow, service_env: dict[str, str], database_url: str
) -> None:
    now = flow.now()
    day = (now - timedelta(days=2)).date()
    customer = customer_id("review")
    topup = replace(_topup(customer, day), fallback_method=PaymentMethod.CHEQUE_TT)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        await put_in_phase(pool, topup, "needs_review", now - timedelta(hours=25), now)

        resolved = await charges(
            service_env,
            "resolve",
            topup.idempotency_key,
            "--failed",
            "--by",
            "alice",
            "--why",
            "no PaymentIntent at Stripe",
        )

        assert resolved.code == 0, resolved.err
        invoice_id = output_event_id(customer, day, "invoice-requested|cheque_tt")
        assert invoice_id in resolved.out
        assert "invoice_requested" in resolved.out
        (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
        assert invoice["event_id"] == invoice_id
        assert (invoice["payment_method"], invoice["fallback_from"]) == ("cheque_tt", "stripe")
        assert (invoice["business_date"], invoice["amount"]) == (day.isoformat(), "150.00")
        await flow.flush(customer)
        assert flow.out("TOP_UP_FAILED", customer) == []
        row = await pool.fetchrow(
            "SELECT phase, result FROM daily_keys WHERE customer_id = $1", customer
        )
        assert row is not None
        assert (row["phase"], row["result"]) == ("done", "invoice_requested")
        opened = await pool.fetch(
            "SELECT invoice_request_id, amount FROM open_invoices WHERE customer_id = $1", customer
        )
        assert [(r["invoice_request_id"], r["amount"]) for r in opened] == [
            (invoice_id, Decimal("150.00"))
        ]
        audit = await pool.fetchrow(
            "SELECT decision, event_id FROM charge_audit WHERE customer_id = $1", customer
        )
        assert audit is not None
        assert (audit["decision"], audit["event_id"]) == ("failed", invoice_id)
    finally:
        await close_pool(pool)
