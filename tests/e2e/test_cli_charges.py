"""`auto-topup charges list` and `charges resolve` against the running service: an operator
settles a charge that reached the Stripe horizon, the service's relay publishes the decision
once, and the audit row says who, when and why.

The charges are put in their phases directly in the service's database (driving a real one to
'needs_review' takes 24 hours of Stripe answers): one in 'needs_review', one still in the
charger's hands with its next attempt a day away, so that the running charger leaves both alone.

The service's clock, and the `charges` command's (both read AUTO_TOPUP_CLOCK_OFFSET_SECONDS), are
pinned at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK); every time is built from it.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from service.adapters.postgres.store import PgUnitOfWork
from service.contract.codec import output_event_id
from service.domain.model import Card, PaymentMethod, TopUp
from service.service_layer.ports import Claim
from tests.cli_tools import CliRun, run_cli
from tests.e2e.conftest import Flow, customer_id, pinned_offset
from tests.e2e.test_http import scrape, until, value
from tests.kafka_tools import WAIT_SECONDS
from tests.pg_tools import close_pool, create_pool
from tests.service_process import ServiceProcess


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), whatever the
    hour the tests run at; every time is built from it (`flow.now()`)."""
    return pinned_offset()


async def charges(env: dict[str, str], *args: str) -> CliRun:
    return await run_cli(env, "charges", *args, columns=250)


def _topup(customer: str, day: date) -> TopUp:
    return TopUp(
        customer_id=customer,
        business_date=day,
        trigger_event_id=f"ev-{customer}",
        balance_at_trigger=Decimal("4.00"),
        limit_threshold=Decimal("10.00"),
        amount=Decimal("150.00"),
        currency="USD",
        payment_method=PaymentMethod.STRIPE,
        card=Card(f"cus_{customer}", f"pm_{customer}"),
    )


async def put_in_phase(
    pool: asyncpg.Pool, topup: TopUp, phase: str, first_attempt_at: datetime, now: datetime
) -> None:
    """Claims the daily key with its next attempt a day away (the running charger leaves it),
    then gives it the phase a day of Stripe trouble would have. `now` is the service's clock;
    the charger compares the next attempt with PostgreSQL's now(), up to a day later (the
    pinned clock is behind the host's by less than a day): two days on is a day away on both."""
    away = now + timedelta(days=2)
    async with PgUnitOfWork(pool) as uow:
        taken = await uow.store.claim_daily_keys([Claim(topup, "claimed", next_attempt_at=away)])
        await uow.commit()
    assert taken == {(topup.customer_id, topup.business_date)}
    await pool.execute(
        "UPDATE daily_keys SET phase = $3, attempts = 290, first_attempt_at = $4::timestamptz,"
        " looked_up_at = $4::timestamptz + interval '24 hours 6 minutes',"
        " detail = 'no PaymentIntent found by metadata.daily_key past the Stripe key horizon',"
        " next_attempt_at = CASE WHEN $3 = 'needs_review' THEN NULL ELSE next_attempt_at END"
        " WHERE customer_id = $1 AND business_date = $2",
        topup.customer_id,
        topup.business_date,
        phase,
        first_attempt_at,
    )


async def test_list_and_resolve_a_charge_in_review(
    flow: Flow, service: ServiceProcess, service_env: dict[str, str], database_url: str
) -> None:
    now = flow.now()
    day = (now - timedelta(days=2)).date()
    stuck, busy = customer_id("review"), customer_id("busy")
    review_topup, busy_topup = _topup(stuck, day), _topup(busy, day)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        await put_in_phase(pool, review_topup, "needs_review", now - timedelta(hours=25), now)
        await put_in_phase(pool, busy_topup, "charging", now - timedelta(hours=2), now)

        # The gauge of /metrics sees the charge in review.
        port = service.http_port

        async def review_gauge(expected: float) -> bool:
            samples = await scrape(port)
            return value(samples, "auto_topup_stripe_charges_needs_review") == expected

        await until(
            lambda: review_gauge(1), "auto_topup_stripe_charges_needs_review 1", WAIT_SECONDS
        )

        listed = await charges(service_env, "list", "--json")
        assert listed.code == 0, listed.err
        rows = {r["daily_key"]: r for r in map(json.loads, listed.out.splitlines())}
        review_key, busy_key = review_topup.idempotency_key, busy_topup.idempotency_key
        assert rows.keys() >= {review_key, busy_key}
        assert rows[review_key]["phase"] == "needs_review"
        assert rows[review_key]["amount"] == "150.00"
        assert rows[review_key]["key_age_seconds"] > 25 * 3600 - 60
        assert rows[busy_key]["phase"] == "charging"
        table = await charges(service_env, "list")
        assert table.code == 0, table.err
        assert review_key in table.out
        assert "needs_review" in table.out

        # Bad usage: exit 2, nothing done (every case: tests/unit/test_cli_charges.py).
        bad = await charges(service_env, "resolve", review_key, "--by", "alice", "--why", "x")
        assert bad.code == 2, bad
        # Not resolvable: still in the charger's hands; unknown key.
        busy_run = await charges(
            service_env, "resolve", busy_key, "--failed", "--by", "alice", "--why", "x"
        )
        assert busy_run.code == 1, busy_run
        assert "charging" in busy_run.err
        unknown = await charges(
            service_env, "resolve", f"nobody/{day}", "--failed", "--by", "alice", "--why", "x"
        )
        assert unknown.code == 1, unknown

        why = "Stripe dashboard: pi_e2e_manual succeeded, metadata daily_key matches"
        resolved = await charges(
            service_env,
            "resolve",
            review_key,
            "--succeeded",
            "pi_e2e_manual",
            "--by",
            "alice",
            "--why",
            why,
        )
        assert resolved.code == 0, resolved.err
        credit_id = output_event_id(stuck, day, "credit-issued")
        assert credit_id in resolved.out

        # The running service's relay publishes it: once, under the daily key's event id.
        (credit,) = await flow.wait_out("CREDIT_ISSUED", stuck)
        assert credit["event_id"] == credit_id
        assert credit["stripe_payment_intent_id"] == "pi_e2e_manual"
        assert credit["funding_source"] == "stripe"
        assert (credit["business_date"], credit["amount"]) == (day.isoformat(), "150.00")
        again = await charges(
            service_env,
            "resolve",
            review_key,
            "--failed",
            "--by",
            "bob",
            "--why",
            "second thoughts",
        )
        assert again.code == 1, again
        assert "settled already" in again.err
        await flow.flush(stuck)
        assert len(flow.out("CREDIT_ISSUED", stuck)) == 1
        assert flow.out("TOP_UP_FAILED", stuck) == []

        audit: list[dict[str, Any]] = [
            dict(r) for r in await pool.fetch("SELECT * FROM charge_audit ORDER BY id")
        ]
        assert len(audit) == 1
        assert {k: audit[0][k] for k in ("daily_key", "old_phase", "decision")} == {
            "daily_key": review_key,
            "old_phase": "needs_review",
            "decision": "succeeded",
        }
        assert (audit[0]["resolved_by"], audit[0]["why"]) == ("alice", why)
        assert (audit[0]["payment_intent_id"], audit[0]["event_id"]) == ("pi_e2e_manual", credit_id)
        # Resolved on the service's clock (`charges` reads its offset), during this test.
        assert now <= audit[0]["resolved_at"] <= flow.now()

        after = await charges(service_env, "list", "--json")
        keys = [json.loads(line)["daily_key"] for line in after.out.splitlines()]
        assert review_key not in keys
        assert busy_key in keys
        await until(
            lambda: review_gauge(0), "auto_topup_stripe_charges_needs_review 0", WAIT_SECONDS
        )
    finally:
        await close_pool(pool)
