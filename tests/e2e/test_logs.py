"""Logs: one JSON object per line, one line per decision with its reason, and no secret ever
(checked with known canary values at DEBUG level, through the real stack and localstripe).

The service's clock is pinned at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK); Flow dates
every event from it."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.cli_tools import run_cli_now
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, online_top_up, pinned_offset
from tests.e2e.test_http import get
from tests.service_process import ServiceProcess
from tests.stripe_tools import DECLINED_ON_CHARGE, GOOD, payment_intent, saved_card

CANARY_KEY = f"sk_test_logcanary{uuid.uuid4().hex}"
CANARY_PASSWORD = f"pw-canary-{uuid.uuid4().hex}"


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "STRIPE_API_KEY": CANARY_KEY, "AUTO_TOPUP_LOG_LEVEL": "DEBUG"}


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), never at the
    host's hour (and behind the host's clock: PostgreSQL finds the charges due at once)."""
    return pinned_offset()


async def test_no_secret_in_logs_and_one_line_per_decision(
    flow: Flow, service: ServiceProcess, infra: Infra
) -> None:
    assert infra.stripe_api_base, "run `make test` (localstripe)"
    good, declined, cheque = customer_id("good"), customer_id("declined"), customer_id("cheque")
    for customer, card in ((good, GOOD), (declined, DECLINED_ON_CHARGE)):
        await flow.settings(customer, **online_top_up(saved_card(infra.stripe_api_base, card)))
        await flow.balance(customer, "1.00")
    await flow.settings(cheque, threshold="10.00")
    await flow.balance(cheque, "1.00")
    (credit,) = await flow.wait_out("CREDIT_ISSUED", good)
    # Stripe answered the charge with the PaymentIntent, its client_secret included (which
    # lets a browser confirm the payment): no line may carry it, at DEBUG either.
    secret = payment_intent(infra.stripe_api_base, credit["stripe_payment_intent_id"])
    assert secret.client_secret, "localstripe gave no client_secret to look for"
    await flow.wait_out("TOP_UP_FAILED", declined)
    await flow.wait_out("INVOICE_REQUESTED", cheque)
    status, metrics = await get(service.http_port, "/metrics")  # a bounded request
    assert status == 200
    assert CANARY_KEY not in metrics
    assert service.stop() == 0

    assert service.lines, "the service logged nothing"
    entries = [json.loads(line) for line in service.lines]  # every line is one JSON object
    assert not [line for line in service.lines if CANARY_KEY in line]
    assert not [line for line in service.lines if CANARY_KEY[8:] in line]  # nor a key's tail
    assert not [line for line in service.lines if secret.client_secret in line]
    assert not [line for line in service.lines if "_secret_" in line]
    decisions = [e["decision"] for e in entries if e.get("logger") == "auto_topup.decisions"]
    triggered = {d["customer_id"] for d in decisions if d["outcome"] == "triggered"}
    assert {good, declined, cheque} <= triggered
    for d in decisions:
        assert d["outcome"], d
        assert "reason" in d, d
        assert d["event_id"], d


def test_no_secret_in_start_up_errors(service_env: dict[str, str]) -> None:
    """A configuration error, and a database that does not answer, name what is wrong without
    the key or the password."""
    bad_config = {**service_env, "AUTO_TOPUP_LOG_LEVEL": "LOUD"}
    run = run_cli_now(bad_config, "run")
    assert run.code == 2
    assert "AUTO_TOPUP_LOG_LEVEL" in run.err
    assert CANARY_KEY not in run.err + run.out

    no_key = {k: v for k, v in {**os.environ, **service_env}.items() if k != "STRIPE_API_KEY"}
    run = run_cli_now(no_key, "run", inherit=False)
    assert run.code == 2
    assert "configuration error: STRIPE_API_KEY: Field required" in run.err

    unreachable = f"postgresql://postgres:{CANARY_PASSWORD}@127.0.0.1:9/auto_topup"
    proc = ServiceProcess({**service_env, "DATABASE_URL": unreachable}, "no-db")
    proc.start(until="waiting for PostgreSQL")
    assert proc.stop() == 0
    assert not [line for line in proc.lines if CANARY_PASSWORD in line or CANARY_KEY in line]
