"""A partner credit that no balance event ever names stops being reserved after the hold
(AUTO_TOPUP_PARTNER_CREDIT_HOLD_SECONDS, 48 hours by default; a few seconds here)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.e2e.conftest import Flow, customer_id, pinned_offset
from tests.e2e.test_money_v2 import master_account_customers, partner_with

HOLD_SECONDS = 4


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "AUTO_TOPUP_PARTNER_CREDIT_HOLD_SECONDS": str(HOLD_SECONDS)}


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK): every event
    is dated from it (`flow.now()`), and the hold is waited out on it."""
    return pinned_offset()


async def test_a_credit_no_balance_names_is_released_after_the_hold(flow: Flow) -> None:
    partner, a, c = customer_id("partner"), customer_id(), customer_id()
    now = flow.now()
    await partner_with(flow, partner, "100.00", now - timedelta(seconds=40), 1)
    await master_account_customers(flow, partner, a, c)
    await flow.balance(a, "1.00", at=now - timedelta(seconds=30))
    (credit_a,) = await flow.wait_out("CREDIT_ISSUED", a)
    # (While the hold lasts, C would be refused: test_money_v2 shows the reservation; a
    # check here would race the hold on a slow machine.)
    # The hold runs on the service's clock from the moment it issued A's credit (emitted_at):
    # what is left of it is waited out on that clock (ours reads the same, `flow.now()`).
    released = datetime.fromisoformat(credit_a["emitted_at"]) + timedelta(seconds=HOLD_SECONDS)
    await asyncio.sleep(max((released - flow.now()).total_seconds(), 0.0))
    await flow.balance(c, "1.00", at=flow.now())
    (credit_c,) = await flow.wait_out("CREDIT_ISSUED", c)
    assert Decimal(credit_c["amount"]) == Decimal("60.00")
