"""The Stripe horizon of the charger, and temporary declines, with fakes of its ports.

Stripe keeps an idempotency key for 24 hours: after an unknown outcome the charger looks the
charge up by metadata.daily_key before the next create, looks it up before any request once
its first attempt is older than the lookup age (23 h), and never sends a create past the key
horizon (24 h): the charge then waits in 'needs_review'. Time is a fake clock that moves only
when a test says so; every instant is built from T0.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.config import Settings, Topics
from service.contract.codec import output_event_id
from service.service_layer.charger import Charger, stripe_idempotency_key
from service.service_layer.payments import (
    TEMPORARY_DECLINES,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    TransientChargeError,
)
from tests.charge_fakes import (
    DAY,
    T0,
    FakeClock,
    MemoryChargeStore,
    ScriptedGateway,
    server_error,
    stripe_topup,
)

TOPICS = Topics()
LOOKUP_AFTER = timedelta(hours=23)
HORIZON = timedelta(hours=24)
LEASE = timedelta(seconds=60)
SETTLE = timedelta(minutes=5)
# Longer than any retry delay (at most 300 s, with jitter up to 360 s): the charge is due.
LATER = timedelta(minutes=7)

TOPUP = stripe_topup()
KEY = TOPUP.idempotency_key


def succeeded(pi: str) -> ChargeResult:
    return ChargeResult(ChargeStatus.SUCCEEDED, pi)


def declined(reason: str, pi: str = "pi_declined") -> ChargeResult:
    return ChargeResult(ChargeStatus.FAILED, pi, reason, "Your card was declined.", True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(clock: FakeClock) -> MemoryChargeStore:
    store = MemoryChargeStore(clock)
    store.claim(TOPUP)
    return store


def charger(store: MemoryChargeStore, gateway: ScriptedGateway, clock: FakeClock) -> Charger:
    return Charger(
        store,
        gateway,
        clock,
        TOPICS,
        lease_seconds=LEASE.total_seconds(),
        retry_base_seconds=60.0,
        retry_max_seconds=300.0,
        lookup_after=LOOKUP_AFTER,
        key_horizon=HORIZON,
        search_settle=SETTLE,
    )


async def first_attempt_fails_with_5xx(
    store: MemoryChargeStore, gateway: ScriptedGateway, clock: FakeClock
) -> Charger:
    gateway.charges.append(server_error())
    worker = charger(store, gateway, clock)
    assert await worker.run_once() == 1
    row = store.row(TOPUP)
    assert (row.phase, row.attempts, row.first_attempt_at) == ("charging", 1, T0)
    assert row.next_attempt_at is not None
    assert row.next_attempt_at > T0
    return worker


# --- after an unknown outcome -------------------------------------------------------------


async def test_after_a_5xx_the_next_attempt_searches_before_it_creates(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    gateway = ScriptedGateway(clock)
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    gateway.finds.append([])  # not found (maybe not yet searchable): create under the same key
    gateway.charges.append(succeeded("pi_1"))
    clock.advance(LATER)

    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find", "charge"]
    assert gateway.calls[1].argument == KEY
    first, second = (c.argument for c in gateway.creates())
    assert isinstance(first, ChargeRequest)
    assert isinstance(second, ChargeRequest)
    assert first == second
    assert first.idempotency_key == stripe_idempotency_key(TOPUP) == f"auto-topup:{KEY}"
    row = store.row(TOPUP)
    assert (row.phase, row.result, row.payment_intent_id) == ("done", "credit_issued", "pi_1")


@pytest.mark.parametrize("after", [LATER, timedelta(hours=23, minutes=30)])
async def test_a_succeeded_intent_found_is_adopted_without_a_create(
    store: MemoryChargeStore, clock: FakeClock, after: timedelta
) -> None:
    gateway = ScriptedGateway(clock)
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    gateway.finds.append([succeeded("pi_behind_the_500")])
    clock.advance(after)

    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find"]
    row = store.row(TOPUP)
    assert (row.phase, row.result, row.payment_intent_id) == (
        "done",
        "credit_issued",
        "pi_behind_the_500",
    )
    [event] = store.events()
    assert event["_topic"] == TOPICS.credit_issued
    assert event["event_id"] == output_event_id(TOPUP.customer_id, DAY, "credit-issued")
    assert event["stripe_payment_intent_id"] == "pi_behind_the_500"
    assert event["emitted_at"].startswith((T0 + after).date().isoformat())


async def test_a_failed_intent_found_is_published_as_top_up_failed(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    gateway = ScriptedGateway(clock)
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    gateway.finds.append([declined("insufficient_funds", "pi_f")])
    clock.advance(LATER)

    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find"]
    row = store.row(TOPUP)
    assert (row.phase, row.result, row.reason) == ("done", "failed", "insufficient_funds")
    event, notice = store.events()  # the failure, and the stripe_paused notice of the pause
    assert (event["_topic"], event["reason"]) == (TOPICS.top_up_failed, "insufficient_funds")
    assert (notice["_topic"], notice["type"]) == (TOPICS.auto_topup_notice, "stripe_paused")
    assert store.paused == [(TOPUP.customer_id, "pm_cust-1")]


async def test_a_processing_intent_found_is_awaited_then_read_by_its_id(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    gateway = ScriptedGateway(clock)
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    gateway.finds.append([ChargeResult(ChargeStatus.PENDING, "pi_p")])
    clock.advance(LATER)
    assert await worker.run_once() == 1
    row = store.row(TOPUP)
    assert (row.phase, row.payment_intent_id) == ("charging", "pi_p")

    gateway.retrieves.append(succeeded("pi_p"))
    clock.advance(LATER)
    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find", "retrieve"]
    assert gateway.calls[2].argument == "pi_p"
    assert (row.phase, row.result) == ("done", "credit_issued")


async def test_a_worker_that_died_mid_call_is_resumed_with_a_search_first(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    # The first worker leased the charge and died in its Stripe call: nothing was recorded.
    [leased] = await store.lease(1, LEASE.total_seconds(), clock())
    assert leased.attempts == 1
    clock.advance(LEASE + timedelta(seconds=1))  # the lease runs out
    gateway = ScriptedGateway(clock, finds=[[succeeded("pi_made")]])

    assert await charger(store, gateway, clock).run_once() == 1

    assert gateway.kinds() == ["find"]
    assert store.row(TOPUP).payment_intent_id == "pi_made"


async def test_inside_the_window_a_failed_search_does_not_hold_back_the_create(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    """The idempotency key still covers the create: Stripe answers with the first charge."""
    gateway = ScriptedGateway(clock)
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    gateway.finds.append(TransientChargeError("search failed: APIError (503)"))
    gateway.charges.append(succeeded("pi_2"))
    clock.advance(LATER)

    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find", "charge"]
    assert store.row(TOPUP).result == "credit_issued"


# --- past the lookup age ------------------------------------------------------------------


async def test_past_the_lookup_age_no_create_goes_out_before_a_search_has_answered(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    gateway = ScriptedGateway(clock)
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    clock.advance(LOOKUP_AFTER + timedelta(minutes=1) - LATER)
    gateway.charges.append(server_error())
    gateway.finds.append([])
    clock.advance(LATER)
    assert await worker.run_once() == 1  # 23h01: search (nothing yet), then create: 500 again
    assert gateway.kinds() == ["charge", "find", "charge"]

    gateway.finds.append(TransientChargeError("search failed: APIConnectionError"))
    clock.advance(LATER)
    assert await worker.run_once() == 1  # the search fails: no create, look again later

    assert gateway.kinds() == ["charge", "find", "charge", "find"]
    row = store.row(TOPUP)
    assert row.phase == "charging"
    assert row.next_attempt_at is not None
    assert row.next_attempt_at > clock()

    gateway.finds.append([])
    gateway.charges.append(succeeded("pi_3"))
    clock.advance(LATER)
    assert await worker.run_once() == 1
    assert gateway.kinds() == ["charge", "find", "charge", "find", "find", "charge"]
    assert row.result == "credit_issued"


async def test_an_old_charge_is_looked_up_even_on_its_first_lease(clock: FakeClock) -> None:
    """A charge whose key's first use is older than the lookup age (a row from before the
    horizon existed, its first attempt taken as its claim time) is searched before a create."""
    store = MemoryChargeStore(clock)
    store.claim(TOPUP, first_attempt_at=T0 - timedelta(hours=23, minutes=10))
    gateway = ScriptedGateway(clock, finds=[[succeeded("pi_old")]])

    assert await charger(store, gateway, clock).run_once() == 1

    assert gateway.kinds() == ["find"]
    assert store.row(TOPUP).payment_intent_id == "pi_old"


# --- past the key horizon -----------------------------------------------------------------


async def test_past_the_horizon_no_create_is_ever_sent_and_the_charge_needs_review(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    # Stripe replays the saved 500 of the first request for every create under the key, and
    # its search never finds the charge.
    gateway = ScriptedGateway(clock, then_charge=server_error(), then_find=[])
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)

    while clock() < T0 + HORIZON + timedelta(hours=2):
        clock.advance(LATER)
        await worker.run_once()

    creates = gateway.creates()
    assert len(creates) > 200  # retried all day long...
    assert max(c.at for c in creates) < T0 + HORIZON - LEASE  # ...but never near the horizon
    row = store.row(TOPUP)
    assert row.phase == "needs_review"
    assert row.result is None
    assert row.next_attempt_at is None
    assert "horizon" in row.detail
    assert store.reviews == 1
    assert store.outbox == {}  # nothing published: an operator decides
    # The decision was taken on a search made once every create had time to be indexed.
    last_find = [c for c in gateway.calls if c.kind == "find"][-1]
    assert last_find.at >= T0 + HORIZON + SETTLE
    assert row.looked_up_at == last_find.at
    # Nothing more is ever sent for it.
    calls = len(gateway.calls)
    clock.advance(timedelta(days=3))
    assert await worker.run_once() == 0
    assert len(gateway.calls) == calls


async def test_between_the_last_create_and_the_settled_search_the_charge_waits(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    gateway = ScriptedGateway(clock)
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    clock.advance(HORIZON - LATER)  # 24 h after the first attempt, less a few minutes
    gateway.finds.append([])
    clock.advance(LATER)

    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find"]  # past the horizon: no create
    row = store.row(TOPUP)
    assert row.phase == "charging"  # a search right after the last creates proves nothing yet
    assert row.next_attempt_at == T0 + HORIZON + SETTLE

    gateway.finds.append([succeeded("pi_late")])  # indexed meanwhile
    clock.now = T0 + HORIZON + SETTLE
    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find", "find"]
    assert (row.phase, row.result, row.payment_intent_id) == ("done", "credit_issued", "pi_late")


async def test_past_the_horizon_a_search_that_never_answers_ends_in_review(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    gateway = ScriptedGateway(clock, then_find=TransientChargeError("search failed: 404"))
    worker = await first_attempt_fails_with_5xx(store, gateway, clock)
    clock.now = T0 + HORIZON + SETTLE

    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "find"]
    row = store.row(TOPUP)
    assert row.phase == "needs_review"
    assert "search" in row.detail


async def test_a_known_payment_intent_past_the_horizon_is_still_read_by_its_id(
    store: MemoryChargeStore, clock: FakeClock
) -> None:
    gateway = ScriptedGateway(clock, charges=[ChargeResult(ChargeStatus.PENDING, "pi_slow")])
    worker = charger(store, gateway, clock)
    assert await worker.run_once() == 1
    gateway.retrieves.append(succeeded("pi_slow"))
    clock.now = T0 + HORIZON + timedelta(hours=1)

    assert await worker.run_once() == 1

    assert gateway.kinds() == ["charge", "retrieve"]
    assert store.row(TOPUP).result == "credit_issued"


def test_the_lookup_age_must_be_below_the_horizon(clock: FakeClock) -> None:
    store, gateway = MemoryChargeStore(clock), ScriptedGateway(clock)
    with pytest.raises(ValueError, match="horizon"):
        Charger(store, gateway, clock, TOPICS, lookup_after=HORIZON, key_horizon=HORIZON)


def test_settings_reject_a_horizon_not_above_the_lookup_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTO_TOPUP_STRIPE_LOOKUP_AFTER_SECONDS", "3600")
    monkeypatch.setenv("AUTO_TOPUP_STRIPE_KEY_HORIZON_SECONDS", "3600")
    with pytest.raises(ValueError, match="AUTO_TOPUP_STRIPE_LOOKUP_AFTER_SECONDS"):
        Settings()
    monkeypatch.setenv("AUTO_TOPUP_STRIPE_KEY_HORIZON_SECONDS", "90000")  # Stripe: 24 h
    with pytest.raises(ValueError, match="AUTO_TOPUP_STRIPE_KEY_HORIZON_SECONDS"):
        Settings()
    monkeypatch.setenv("AUTO_TOPUP_STRIPE_KEY_HORIZON_SECONDS", "7200")
    settings = Settings()
    assert (settings.stripe_lookup_after_seconds, settings.stripe_key_horizon_seconds) == (
        3600,
        7200,
    )


# --- temporary declines -------------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(TEMPORARY_DECLINES))
async def test_a_temporary_decline_is_published_but_does_not_pause(
    store: MemoryChargeStore, clock: FakeClock, reason: str
) -> None:
    # Even a gateway that calls the card unusable: the charger's rule is the decline code.
    gateway = ScriptedGateway(clock, charges=[declined(reason)])

    assert await charger(store, gateway, clock).run_once() == 1

    [event] = store.events()
    assert (event["_topic"], event["reason"]) == (TOPICS.top_up_failed, reason)
    assert store.row(TOPUP).result == "failed"
    assert store.paused == []


@pytest.mark.parametrize(
    "reason", ["card_declined", "insufficient_funds", "expired_card", "authentication_required"]
)
async def test_a_hard_failure_pauses_the_card(
    store: MemoryChargeStore, clock: FakeClock, reason: str
) -> None:
    gateway = ScriptedGateway(clock, charges=[declined(reason)])

    assert await charger(store, gateway, clock).run_once() == 1

    event, notice = store.events()  # the failure, and the stripe_paused notice of the pause
    assert event["reason"] == reason
    assert (notice["type"], notice["reason"]) == ("stripe_paused", reason)
    assert store.paused == [(TOPUP.customer_id, "pm_cust-1")]


def test_the_temporary_declines_are_the_ones_stripe_documents() -> None:
    assert {
        "try_again_later",
        "processing_error",
        "issuer_not_available",
        "reenter_transaction",
    } == TEMPORARY_DECLINES
