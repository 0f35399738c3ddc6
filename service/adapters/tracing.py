"""OpenTelemetry tracing of decisions: optional, off by default.

On (AUTO_TOPUP_TRACING=true, with the `tracing` extra installed), every decision that publishes
an output event is a span whose parent is the trace context in the input record's headers
(W3C `traceparent`/`tracestate`, when the producer sent one), and the output event carries that
span's context in its own headers, so a trace runs from the metering service's event to the
invoicing or wallet service that consumes ours. Off, the handler holds no tracer and does no
work at all for it.
"""

from __future__ import annotations

import base64
from typing import Literal

from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace import Tracer as OtelApiTracer

from service.service_layer.ports import InputRecord

PROPAGATED = ("traceparent", "tracestate")

Exporter = Literal["otlp", "console", "none"]


class OtelTracer:
    """The Tracer port on OpenTelemetry."""

    def __init__(self, tracer: OtelApiTracer, flush: TracerProvider | None = None) -> None:
        self._tracer = tracer
        self._provider = flush

    def close(self) -> None:
        """Exports what is buffered (at shutdown)."""
        if self._provider is not None:
            self._provider.shutdown()

    def decided(
        self, record: InputRecord, customer_id: str, outcome: str
    ) -> tuple[tuple[str, str], ...]:
        carrier = {
            name: value.decode("latin-1") for name, value in record.headers if name in PROPAGATED
        }
        with self._tracer.start_as_current_span(
            f"{record.topic} process",
            context=propagate.extract(carrier),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "auto_topup.customer_id": customer_id,
                "auto_topup.outcome": outcome,
            },
        ):
            out: dict[str, str] = {}
            propagate.inject(out)
        return tuple(
            (name, base64.b64encode(value.encode("latin-1")).decode("ascii"))
            for name, value in out.items()
        )


def otel_tracer(exporter: Exporter) -> OtelTracer:
    tracer_provider = provider(exporter)
    return OtelTracer(tracer_provider.get_tracer("auto-topup"), tracer_provider)


def provider(exporter: Exporter, service_name: str = "auto-topup") -> TracerProvider:
    """A tracer provider exporting as the standard OTEL_* variables say (OTLP over HTTP by
    default: OTEL_EXPORTER_OTLP_ENDPOINT, ...)."""
    result = TracerProvider(resource=Resource.create({"service.name": service_name}))
    chosen: SpanExporter | None = None
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        chosen = OTLPSpanExporter()
    elif exporter == "console":
        chosen = ConsoleSpanExporter()
    if chosen is not None:
        result.add_span_processor(BatchSpanProcessor(chosen))
    return result
