"""Tracing through the running service: the trace context of a balance event reaches the
output event it causes, also a Stripe one published later by the charger."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, online_top_up
from tests.factories import balance_wire, dumps
from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS
from tests.stripe_tools import GOOD, saved_card


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "AUTO_TOPUP_TRACING": "true", "OTEL_TRACES_EXPORTER": "none"}


async def send_traced(infra: Infra, topic: str, customer: str, trace_id: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka, acks="all", request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            dumps(balance_wire(customer, "1.00")),
            key=customer.encode(),
            headers=[("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01".encode())],
        )
    finally:
        await producer.stop()


async def test_output_events_continue_the_trace_of_their_input(flow: Flow, infra: Infra) -> None:
    assert infra.stripe_api_base, "run `make test` (localstripe)"
    cheque, card = customer_id("cheque"), customer_id("card")
    await flow.settings(cheque)
    await flow.settings(card, **online_top_up(saved_card(infra.stripe_api_base, GOOD)))
    await flow.flush(cheque)
    await flow.flush(card)
    traces = {cheque: uuid.uuid4().hex, card: uuid.uuid4().hex}
    for customer, trace_id in traces.items():
        await send_traced(infra, flow.topics["WALLET_BALANCE_CHANGED"], customer, trace_id)

    await flow.wait_out("INVOICE_REQUESTED", cheque)
    await flow.wait_out("CREDIT_ISSUED", card)
    for name, customer in (("INVOICE_REQUESTED", cheque), ("CREDIT_ISSUED", card)):
        (record,) = [r for r in flow.reader.on(flow.topics[name]) if r.key == customer.encode()]
        _, trace_id, span_id, _ = record.headers["traceparent"].decode().split("-")
        assert trace_id == traces[customer], name
        assert len(span_id) == 16
