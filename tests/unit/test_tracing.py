"""Tracing: a decision's span is a child of the input's trace context, and the output event
carries that span on in its headers. Off, nothing is added."""

from __future__ import annotations

import base64
from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.adapters.tracing import OtelTracer
from service.config import Topics
from service.domain import rules
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord, OutboxRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.fakes import fake_uow_factory

TOPICS = Topics()
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


def records(traced: bool) -> list[InputRecord]:
    customer = "cust-traced"
    headers = (("traceparent", TRACEPARENT.encode()),) if traced else ()
    settings = settings_wire(customer, at=NOW - timedelta(minutes=2))
    low = balance_wire(customer, "1.00", at=NOW - timedelta(minutes=1))
    return [
        InputRecord(TOPICS.settings_updated, 0, 0, customer.encode(), dumps(settings)),
        InputRecord(TOPICS.wallet_balance_changed, 0, 7, customer.encode(), dumps(low), headers),
    ]


def headers_of(record: OutboxRecord) -> dict[str, str]:
    return {name: base64.b64decode(value).decode() for name, value in record.headers}


async def test_the_output_event_continues_the_input_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    db, uow = fake_uow_factory()
    tracer = OtelTracer(provider.get_tracer("test"))
    handler = BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS, tracer)

    await handler.handle(records(traced=True))

    (invoice,) = db.committed.outbox
    (span,) = exporter.get_finished_spans()
    assert span.parent is not None
    assert f"{span.parent.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == PARENT_SPAN
    assert span.attributes is not None
    assert span.attributes["auto_topup.customer_id"] == "cust-traced"
    assert span.attributes["messaging.kafka.offset"] == 7
    version, trace_id, span_id, flags = headers_of(invoice)["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id == f"{span.context.span_id:016x}" != PARENT_SPAN


async def test_a_producer_without_trace_context_starts_a_trace_here() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    db, uow = fake_uow_factory()
    handler = BatchHandler(
        uow, lambda: NOW, rules.Policy(), TOPICS, OtelTracer(provider.get_tracer("t"))
    )

    await handler.handle(records(traced=False))

    (invoice,) = db.committed.outbox
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert headers_of(invoice)["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"


async def test_off_adds_nothing() -> None:
    db, uow = fake_uow_factory()
    handler = BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS)

    await handler.handle(records(traced=True))

    (invoice,) = db.committed.outbox
    assert "traceparent" not in headers_of(invoice)
    assert headers_of(invoice)["ce_type"] == "com.auto-topup.invoice-requested.v1"
