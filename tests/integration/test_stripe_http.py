"""The Stripe gateway at the HTTP level of the stripe SDK: what localstripe does not model.

A scripted HTTP server on 127.0.0.1 stands in for api.stripe.com. It records every request
(method, path, headers, form body) and answers with the next scripted step: a JSON reply in
the shape real Stripe sends, a dropped connection, or no answer at all. So the tests see what
the real SDK puts on the wire (the Idempotency-Key of every retry, the amount in minor units)
and how the gateway classifies each of Stripe's answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import stripe

from service.adapters.stripe_gateway import StripeGateway
from service.config import Topics
from service.domain.model import Card, PaymentMethod, TopUp
from service.domain.money import to_minor_units
from service.service_layer.charger import Charger, PendingCharge, stripe_idempotency_key
from service.service_layer.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    TransientChargeError,
)
from service.service_layer.ports import OutboxRecord

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# --- the scripted server ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | bytes  # bytes: sent as they are (not JSON)


class Drop:
    """Read the request, then close the connection without answering."""


class Hang:
    """Read the request and never answer (until the test ends)."""


Step = Reply | Drop | Hang


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)


class ScriptedStripe:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: list[Step] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._released.set()  # lets a hanging handler go
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _take(self, request: Recorded) -> Step:
        with self._lock:
            self.requests.append(request)
            if not self._script:
                return Reply(500, {"error": {"type": "api_error", "message": "unscripted"}})
            return self._script.pop(0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                step = fake._take(Recorded(self.command, self.path, headers, body))
                if isinstance(step, Hang):
                    fake._released.wait(timeout=60)
                if not isinstance(step, Reply):
                    self.close_connection = True  # nothing written: the client sees EOF
                    return
                data = step.body if isinstance(step.body, bytes) else json.dumps(step.body).encode()
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{len(fake.requests)}")
                self.end_headers()
                self.wfile.write(data)

        return Handler


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
    return StripeGateway(api_key="sk_test_fake", api_base=stripe_http.base, timeout_seconds=10)


# --- Stripe's shapes ----------------------------------------------------------------------


def intent(pi_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": pi_id,
        "object": "payment_intent",
        "status": status,
        "amount": 10000,
        "currency": "usd",
        "livemode": False,
        "last_payment_error": None,
        **extra,
    }


def error(status: int, **fields: Any) -> Reply:
    return Reply(status, {"error": fields})


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

    async def lease(self, limit: int, lease_seconds: float) -> list[PendingCharge]:
        due, self._due = self._due[:limit], self._due[limit:]
        return due

    async def finish(
        self,
        charge: PendingCharge,
        result: str,
        reason: str | None,
        detail: str,
        payment_intent_id: str | None,
        record: OutboxRecord,
        pause_card: str | None,
    ) -> bool:
        self.finished.append((result, payment_intent_id, record))
        return True

    async def postpone(
        self, charge: PendingCharge, until: datetime, detail: str, payment_intent_id: str | None
    ) -> None:
        self.postponed.append(detail)


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
