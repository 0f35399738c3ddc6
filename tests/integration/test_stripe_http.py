"""The Stripe gateway at the HTTP level of the stripe SDK: what localstripe does not model.

A scripted HTTP server on 127.0.0.1 stands in for api.stripe.com. It records every request
(method, path, headers, form body) and answers with the next scripted step: a JSON reply in
the shape real Stripe sends, a dropped connection, or no answer at all. So the tests see what
the real SDK puts on the wire (the Idempotency-Key of every retry, the amount in minor units)
and how the gateway classifies each of Stripe's answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe

from service.adapters.stripe_gateway import StripeGateway
from service.config import Topics
from service.domain.model import Card, PaymentMethod, TopUp
from service.domain.money import to_minor_units
from service.service_layer.charger import (
    ChargeOutcome,
    Charger,
    PendingCharge,
    stripe_idempotency_key,
)
from service.service_layer.charges import Decide
from service.service_layer.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    TransientChargeError,
    pauses_card,
)
from service.service_layer.ports import OutboxRecord
from tests.charge_fakes import T0, FakeClock, MemoryChargeStore, stripe_topup
from tests.stripe_http_fake import (
    Drop,
    Hang,
    Recorded,
    Reply,
    ScriptedStripe,
    Step,
    error,
    found,
    intent,
)
from tests.stripe_tools import REQUEST_SECONDS

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def stripe_http() -> Iterator[ScriptedStripe]:
    server = ScriptedStripe()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(stripe_http: ScriptedStripe) -> StripeGateway:
    return StripeGateway(
        api_key="sk_test_fake", api_base=stripe_http.base, timeout_seconds=REQUEST_SECONDS
    )


REQUEST = ChargeRequest(
    idempotency_key="auto-topup:cust-1/2026-11-25",
    amount_minor=10000,
    currency="USD",
    customer="cus_1",
    payment_method="pm_1",
    metadata={"daily_key": "cust-1/2026-11-25", "trigger_event_id": "ev-1"},
)


# --- tests --------------------------------------------------------------------------------


async def test_5xx_then_dropped_connection_then_success_all_with_one_key_and_body(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    stripe_http.script(
        error(500, type="api_error", message="An unknown error occurred"),
        Drop(),
        Reply(200, intent("pi_ok", "succeeded")),
    )

    with pytest.raises(TransientChargeError) as server_error:
        await gateway.charge(REQUEST)
    assert isinstance(server_error.value.__cause__, stripe.APIError)
    with pytest.raises(TransientChargeError) as dropped:
        await gateway.charge(REQUEST)
    assert isinstance(dropped.value.__cause__, stripe.APIConnectionError)
    result = await gateway.charge(REQUEST)

    assert result == ChargeResult(ChargeStatus.SUCCEEDED, "pi_ok")
    sent = stripe_http.requests
    assert len(sent) == 3  # the SDK itself never retries: the charger does, and records it
    assert {(r.method, r.path) for r in sent} == {("POST", "/v1/payment_intents")}
    assert [r.headers.get("idempotency-key") for r in sent] == [REQUEST.idempotency_key] * 3
    assert len({r.body for r in sent}) == 1
    assert {r.headers.get("authorization") for r in sent} == {"Bearer sk_test_fake"}


async def test_off_session_authentication_required_402_is_a_hard_failure(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    # What real Stripe answers for a 3DS card off-session (localstripe answers 200 instead).
    stripe_http.script(
        error(
            402,
            type="card_error",
            code="authentication_required",
            decline_code="authentication_required",
            message="This payment requires authentication.",
            payment_intent=intent("pi_x", "requires_payment_method"),
        )
    )

    result = await gateway.charge(REQUEST)

    assert result.status is ChargeStatus.FAILED
    assert result.reason == "authentication_required"
    assert result.payment_intent_id == "pi_x"
    assert result.detail == "This payment requires authentication."


@pytest.mark.parametrize(
    ("decline_code", "reason"),
    [("insufficient_funds", "insufficient_funds"), (None, "card_declined")],
)
async def test_card_declined_402_gives_the_most_specific_reason(
    stripe_http: ScriptedStripe, gateway: StripeGateway, decline_code: str | None, reason: str
) -> None:
    fields: dict[str, Any] = {
        "type": "card_error",
        "code": "card_declined",
        "message": "Your card was declined.",
        "payment_intent": intent("pi_d", "requires_payment_method"),
    }
    if decline_code is not None:
        fields["decline_code"] = decline_code
    stripe_http.script(error(402, **fields))

    result = await gateway.charge(REQUEST)

    assert result == ChargeResult(
        ChargeStatus.FAILED, "pi_d", reason, "Your card was declined.", card_unusable=True
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("succeeded", ChargeResult(ChargeStatus.SUCCEEDED, "pi_s")),
        ("processing", ChargeResult(ChargeStatus.PENDING, "pi_s")),
    ],
)
async def test_200_payment_intent_status(
    stripe_http: ScriptedStripe, gateway: StripeGateway, status: str, expected: ChargeResult
) -> None:
    stripe_http.script(Reply(200, intent("pi_s", status)))

    assert await gateway.charge(REQUEST) == expected


async def test_200_requires_action_is_authentication_required(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    # localstripe's answer for a 3DS card: off-session nobody can authenticate.
    stripe_http.script(Reply(200, intent("pi_3ds", "requires_action")))

    result = await gateway.charge(REQUEST)

    assert result.status is ChargeStatus.FAILED
    assert result.reason == "authentication_required"
    assert result.payment_intent_id == "pi_3ds"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(error(429, type="invalid_request_error", code="rate_limit"), id="429"),
        pytest.param(
            error(
                409,
                type="idempotency_error",
                message="There is currently another in-progress request using this "
                "Idempotent Key (that probably means you submitted twice, and the other request "
                "is still going through): auto-topup:cust-1/2026-11-25. Please try again later.",
            ),
            id="409-concurrent-key",
        ),
        pytest.param(error(409, type="invalid_request_error", code="lock_timeout"), id="409"),
        pytest.param(error(401, type="invalid_request_error", message="Invalid API Key"), id="401"),
        pytest.param(error(403, type="invalid_request_error", message="forbidden"), id="403"),
        pytest.param(error(503, type="api_error", message="unavailable"), id="503"),
        pytest.param(Reply(502, b"<html>Bad Gateway</html>"), id="502-html"),
        pytest.param(Reply(200, b"<html>not json</html>"), id="200-not-json"),
    ],
)
async def test_outcome_unknown_or_stripe_away_is_transient(
    stripe_http: ScriptedStripe, gateway: StripeGateway, reply: Reply
) -> None:
    stripe_http.script(reply)

    with pytest.raises(TransientChargeError):
        await gateway.charge(REQUEST)
    assert len(stripe_http.requests) == 1


async def test_no_answer_within_the_timeout_is_transient(stripe_http: ScriptedStripe) -> None:
    gateway = StripeGateway("sk_test_fake", stripe_http.base, timeout_seconds=0.3)
    stripe_http.script(Hang())

    with pytest.raises(TransientChargeError) as timed_out:
        await gateway.charge(REQUEST)
    assert isinstance(timed_out.value.__cause__, stripe.APIConnectionError)
    assert len(stripe_http.requests) == 1


async def test_invalid_request_resource_missing_is_a_hard_failure(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    stripe_http.script(
        error(
            400,
            type="invalid_request_error",
            code="resource_missing",
            param="payment_method",
            message="No such PaymentMethod: 'pm_1'",
        )
    )

    result = await gateway.charge(REQUEST)

    assert result.status is ChargeStatus.FAILED
    assert result.reason == "resource_missing"
    assert result.payment_intent_id is None
    assert "No such PaymentMethod" in result.detail
    assert result.card_unusable  # the saved card is gone: pause like a decline


async def test_other_invalid_requests_fail_without_blaming_the_card(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    stripe_http.script(error(400, type="invalid_request_error", code="amount_too_small"))

    result = await gateway.charge(REQUEST)

    assert (result.status, result.reason) == (ChargeStatus.FAILED, "amount_too_small")
    assert not result.card_unusable


async def test_a_key_reused_with_other_parameters_is_never_settled_as_failed(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    """The first request under the key may have charged: keep retrying (and alerting)."""
    stripe_http.script(
        error(
            400,
            type="idempotency_error",
            message="Keys for idempotent requests can only "
            "be used with the same parameters they were first used with.",
        )
    )

    with pytest.raises(TransientChargeError, match="idempotency"):
        await gateway.charge(REQUEST)


async def test_retrieve_reads_the_payment_intent(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    stripe_http.script(
        error(502, type="api_error", message="bad gateway"),
        Reply(200, intent("pi_p", "succeeded")),
    )

    with pytest.raises(TransientChargeError):
        await gateway.retrieve("pi_p")
    assert await gateway.retrieve("pi_p") == ChargeResult(ChargeStatus.SUCCEEDED, "pi_p")
    assert [(r.method, r.path) for r in stripe_http.requests] == [
        ("GET", "/v1/payment_intents/pi_p")
    ] * 2


# --- amounts in minor units, through the charger ------------------------------------------


class OneChargeStore:
    """A ChargeStore holding one due charge in memory."""

    def __init__(self, topup: TopUp) -> None:
        self._due = [PendingCharge(topup, 1, None, NOW)]
        self.finished: list[tuple[str, str | None, OutboxRecord]] = []
        self.postponed: list[str] = []

    async def lease(self, limit: int, lease_seconds: float, now: datetime) -> list[PendingCharge]:
        due, self._due = self._due[:limit], self._due[limit:]
        return due

    async def finish(self, charge: PendingCharge, decide: Decide) -> ChargeOutcome | None:
        outcome = decide({})  # no fallback, no wallets: the card's own outcome
        self.finished.append((outcome.result, outcome.payment_intent_id, outcome.record))
        return outcome

    async def postpone(
        self,
        charge: PendingCharge,
        until: datetime,
        detail: str,
        payment_intent_id: str | None,
        looked_up_at: datetime | None = None,
    ) -> None:
        self.postponed.append(detail)

    async def review(
        self, charge: PendingCharge, detail: str, looked_up_at: datetime | None
    ) -> bool:
        raise AssertionError(f"unexpected review: {detail}")


def _stripe_topup(tag: str, amount: str, currency: str) -> TopUp:
    return TopUp(
        customer_id=f"cust-{tag}",
        business_date=date(2026, 11, 25),
        trigger_event_id=f"ev-{tag}",
        balance_at_trigger=Decimal("0"),
        limit_threshold=Decimal("10"),
        amount=Decimal(amount),
        currency=currency,
        payment_method=PaymentMethod.STRIPE,
        card=Card(f"cus_{tag}", f"pm_{tag}"),
    )


@pytest.mark.parametrize(
    ("currency", "amount", "minor", "on_output"),
    [
        ("JPY", "1500", "1500", "1500"),  # zero-decimal
        # Three decimals. Real Stripe wants the last digit 0 (it rejects 12345 for 12.345 KWD).
        ("KWD", "12.340", "12340", "12.340"),
        ("USD", "100.5", "10050", "100.50"),
    ],
)
async def test_amount_is_sent_in_the_currencys_minor_units(
    stripe_http: ScriptedStripe,
    gateway: StripeGateway,
    currency: str,
    amount: str,
    minor: str,
    on_output: str,
) -> None:
    topup = _stripe_topup("9", amount, currency)
    assert str(to_minor_units(topup.amount, currency)) == minor
    store = OneChargeStore(topup)
    charger = Charger(store, gateway, lambda: NOW, Topics())
    stripe_http.script(Reply(200, intent("pi_m", "succeeded", currency=currency.lower())))

    assert await charger.run_once() == 1

    [sent] = stripe_http.requests
    assert sent.headers["idempotency-key"] == stripe_idempotency_key(topup)
    assert sent.headers["idempotency-key"] == "auto-topup:cust-9/2026-11-25"
    form = sent.form
    assert form["amount"] == [minor]
    assert form["currency"] == [currency.lower()]
    assert form["off_session"] == ["true"]
    assert form["confirm"] == ["true"]
    assert form["customer"] == ["cus_9"]
    assert form["payment_method"] == ["pm_9"]
    assert form["metadata[daily_key]"] == ["cust-9/2026-11-25"]
    assert store.postponed == []
    [(result, pi_id, record)] = store.finished
    assert (result, pi_id) == ("credit_issued", "pi_m")
    assert record.value is not None
    event = json.loads(record.value)
    assert (event["amount"], event["currency"]) == (on_output, currency)


@pytest.mark.parametrize(
    ("currency", "amount", "stripe_amount"),
    [("ISK", "500", "50000"), ("MGA", "1000", "1000")],
)
async def test_stripe_amount_units_where_they_differ_from_iso_4217(
    stripe_http: ScriptedStripe,
    gateway: StripeGateway,
    currency: str,
    amount: str,
    stripe_amount: str,
) -> None:
    topup = _stripe_topup("x", amount, currency)
    stripe_http.script(Reply(200, intent("pi_x", "succeeded", currency=currency.lower())))

    assert await Charger(OneChargeStore(topup), gateway, lambda: NOW, Topics()).run_once() == 1

    [sent] = stripe_http.requests
    assert sent.form["amount"] == [stripe_amount]


# --- temporary declines -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason", "pauses"),
    [
        pytest.param({"decline_code": "try_again_later"}, "try_again_later", False, id="try-again"),
        pytest.param(
            {"decline_code": "issuer_not_available"}, "issuer_not_available", False, id="issuer"
        ),
        pytest.param(
            {"decline_code": "reenter_transaction"}, "reenter_transaction", False, id="reenter"
        ),
        # processing_error comes as the error's code, without a decline_code.
        pytest.param({"code": "processing_error"}, "processing_error", False, id="processing"),
        pytest.param({"decline_code": "insufficient_funds"}, "insufficient_funds", True, id="hard"),
        # localstripe's pm_card_chargeCustomerFail: card_declined without a decline_code.
        pytest.param({}, "card_declined", True, id="localstripe-decline"),
    ],
)
async def test_a_decline_stripe_documents_as_temporary_does_not_make_the_card_unusable(
    stripe_http: ScriptedStripe,
    gateway: StripeGateway,
    fields: dict[str, str],
    reason: str,
    pauses: bool,
) -> None:
    stripe_http.script(
        error(
            402,
            type="card_error",
            message="Your card was declined.",
            payment_intent=intent("pi_t", "requires_payment_method"),
            **{"code": "card_declined", **fields},
        )
    )

    result = await gateway.charge(REQUEST)

    assert (result.status, result.reason, result.payment_intent_id) == (
        ChargeStatus.FAILED,
        reason,
        "pi_t",
    )
    assert result.card_unusable is pauses
    assert pauses_card(result) is pauses


# --- the Search API: looking a charge up by metadata.daily_key ----------------------------

DAILY_KEY = "cust-1/2026-11-25"


def with_key(pi_id: str, status: str, key: str = DAILY_KEY, **extra: Any) -> dict[str, Any]:
    return intent(pi_id, status, metadata={"daily_key": key}, **extra)


def search_query_of(request: Recorded) -> str:
    [query] = parse_qs(urlsplit(request.path).query)["query"]
    return query


async def test_find_searches_by_metadata_daily_key_and_keeps_exact_matches(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    declined_error = {
        "code": "card_declined",
        "decline_code": "try_again_later",
        "message": "Your card was declined.",
    }
    stripe_http.script(
        found(
            with_key("pi_ok", "succeeded"),
            with_key("pi_wait", "processing"),
            with_key("pi_no", "requires_payment_method", last_payment_error=declined_error),
            with_key("pi_other", "succeeded", key="cust-1/2026-11-24"),  # not this key
        )
    )

    results = await gateway.find(DAILY_KEY)

    assert results == [
        ChargeResult(ChargeStatus.SUCCEEDED, "pi_ok"),
        ChargeResult(ChargeStatus.PENDING, "pi_wait"),
        ChargeResult(
            ChargeStatus.FAILED,
            "pi_no",
            "try_again_later",
            "Your card was declined.",
            card_unusable=False,
        ),
    ]
    [sent] = stripe_http.requests
    assert (sent.method, urlsplit(sent.path).path) == ("GET", "/v1/payment_intents/search")
    assert search_query_of(sent) == "metadata['daily_key']:'cust-1/2026-11-25'"
    assert "idempotency-key" not in sent.headers


async def test_find_escapes_quotes_in_the_key(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    stripe_http.script(found())

    assert await gateway.find("o'brien\\x/2026-11-25") == []

    assert search_query_of(stripe_http.requests[0]) == (
        "metadata['daily_key']:'o\\'brien\\\\x/2026-11-25'"
    )


@pytest.mark.parametrize(
    "reply",
    [
        # localstripe has no Search API: GET /v1/payment_intents/search is a 404 there.
        pytest.param(error(404, type="invalid_request_error", message="Not Found"), id="404"),
        pytest.param(error(500, type="api_error", message="unknown"), id="500"),
        pytest.param(error(429, type="invalid_request_error", code="rate_limit"), id="429"),
        pytest.param(Drop(), id="dropped"),
    ],
)
async def test_a_search_that_cannot_answer_is_no_answer(
    stripe_http: ScriptedStripe, gateway: StripeGateway, reply: Step
) -> None:
    stripe_http.script(reply)

    with pytest.raises(TransientChargeError, match="search failed"):
        await gateway.find(DAILY_KEY)


# --- the horizon, through the charger, counting creates on the wire ------------------------


def _is_create(request: Recorded) -> bool:
    return (request.method, urlsplit(request.path).path) == ("POST", "/v1/payment_intents")


def _is_search(request: Recorded) -> bool:
    return (request.method, urlsplit(request.path).path) == ("GET", "/v1/payment_intents/search")


class StripeThatReplaysItsFirst500:
    """What real Stripe does after a 5xx it saved for the key: every create under the key
    replays that 500 (for 24 hours), and its search never finds a PaymentIntent. Records the
    test clock's time of every request."""

    def __init__(self, clock: FakeClock, search: Reply) -> None:
        self.clock = clock
        self.search = search
        self.seen: list[tuple[datetime, Recorded]] = []

    def __call__(self, request: Recorded) -> Step:
        self.seen.append((self.clock(), request))
        if _is_search(request):
            return self.search
        assert _is_create(request), request
        return Reply(
            500,
            {"error": {"type": "api_error", "message": "An unknown error occurred"}},
            headers=(("Idempotent-Replayed", "true"),),
        )

    def creates(self) -> list[datetime]:
        return [at for at, r in self.seen if _is_create(r)]

    def searches(self) -> list[datetime]:
        return [at for at, r in self.seen if _is_search(r)]


def _horizon_charger(store: MemoryChargeStore, gateway: StripeGateway, clock: FakeClock) -> Charger:
    return Charger(
        store,
        gateway,
        clock,
        Topics(),
        lease_seconds=60.0,
        retry_base_seconds=60.0,
        retry_max_seconds=300.0,
        lookup_after=timedelta(hours=23),
        key_horizon=timedelta(hours=24),
        search_settle=timedelta(minutes=5),
    )


async def test_past_the_horizon_a_charge_is_looked_up_and_never_created_again(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    clock = FakeClock(T0)
    store = MemoryChargeStore(clock)
    topup = stripe_topup()
    store.claim(topup)
    stripe = StripeThatReplaysItsFirst500(clock, found())
    stripe_http.otherwise = stripe
    charger = _horizon_charger(store, gateway, clock)

    while clock() < T0 + timedelta(hours=26):
        await charger.run_once()
        clock.advance(timedelta(minutes=7))

    creates, searches = stripe.creates(), stripe.searches()
    assert creates[0] == T0
    assert len(creates) > 200  # every retry until near the horizon...
    assert max(creates) < T0 + timedelta(hours=24)  # ...and not one after it
    assert all(at > T0 for at in searches)  # looked up after the first unknown outcome
    assert max(searches) >= T0 + timedelta(hours=24, minutes=5)
    # Every create carried the same idempotency key and body.
    sent = [r for _, r in stripe.seen if _is_create(r)]
    assert {r.headers["idempotency-key"] for r in sent} == {"auto-topup:cust-1/2026-11-25"}
    assert len({r.body for r in sent}) == 1
    row = store.row(topup)
    assert (row.phase, row.result) == ("needs_review", None)
    assert store.outbox == {}
    # A needs_review charge is never leased again: nothing more goes to Stripe.
    requests = len(stripe_http.requests)
    clock.advance(timedelta(days=2))
    assert await charger.run_once() == 0
    assert len(stripe_http.requests) == requests


async def test_past_the_horizon_a_charge_found_by_search_is_adopted_without_a_create(
    stripe_http: ScriptedStripe, gateway: StripeGateway
) -> None:
    clock = FakeClock(T0)
    store = MemoryChargeStore(clock)
    topup = stripe_topup()
    store.claim(topup)
    stripe = StripeThatReplaysItsFirst500(clock, found(with_key("pi_went_through", "succeeded")))
    stripe_http.otherwise = stripe
    charger = _horizon_charger(store, gateway, clock)
    assert await charger.run_once() == 1  # T0: the create gets a 500 (it went through)

    clock.advance(timedelta(hours=24, minutes=10))  # the service was away all day
    assert await charger.run_once() == 1

    assert stripe.creates() == [T0]
    assert stripe.searches() == [T0 + timedelta(hours=24, minutes=10)]
    row = store.row(topup)
    assert (row.phase, row.result, row.payment_intent_id) == (
        "done",
        "credit_issued",
        "pi_went_through",
    )
    [event] = store.events()
    assert event["stripe_payment_intent_id"] == "pi_went_through"
