"""The Kafka headers of each message, as JSON Schemas (header values are UTF-8 text).

Outputs carry the CloudEvents Kafka protocol binding in binary content mode
(`service_layer/outbox.py` `cloudevents_headers()`), and the trace context when tracing is on;
a dead letter carries the original record's headers plus the `dlq_*` ones (`messages.py`); an
input record may carry a trace context and, when an operator redrove it from the dead-letter
topic, `auto_topup_redrive`.
"""

from __future__ import annotations

from typing import Any

from service.contract import messages

Schema = dict[str, Any]

CUSTOMER_ID_PATTERN = "^[A-Za-z0-9._:-]{1,128}$"
DIGITS: Schema = {"type": "string", "pattern": "^[0-9]+$"}
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TRUE: Schema = {"type": "string", "const": "true"}

TRACE: dict[str, Schema] = {
    "traceparent": {
        "type": "string",
        "description": "W3C Trace Context: the trace this event belongs to (when tracing is on).",
        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    },
    "tracestate": {"type": "string", "description": "W3C Trace Context, vendor part."},
}


def ce_type(name: str) -> str:
    """The CloudEvents type of an output event: com.auto-topup.<name>.v1."""
    return f"{messages.CE_TYPE_PREFIX}{name}{messages.CE_TYPE_VERSION}"


def output_headers(name: str) -> Schema:
    """The headers of the output event `name` (its topic's default name, e.g. credit-issued)."""
    return {
        "title": "CloudEventHeaders",
        "type": "object",
        "description": "CloudEvents 1.0, Kafka protocol binding, binary content mode: the "
        "attributes as ce_* headers, the value is the event's JSON.",
        "properties": {
            "ce_specversion": {"type": "string", "const": messages.CE_SPECVERSION},
            "ce_id": {"type": "string", "description": "the event's event_id"},
            "ce_type": {"type": "string", "const": ce_type(name)},
            "ce_source": {"type": "string", "const": messages.CE_SOURCE},
            "ce_subject": {
                "type": "string",
                "pattern": CUSTOMER_ID_PATTERN,
                "description": "the event's customer_id",
            },
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "the event's emitted_at",
            },
            "content-type": {"type": "string", "const": "application/json"},
            **TRACE,
        },
        "required": [
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_subject",
            "ce_time",
            "content-type",
        ],
    }


INPUT_HEADERS: Schema = {
    "title": "InputHeaders",
    "type": "object",
    "description": "Headers the service reads on an input record. None is required.",
    "properties": {
        **TRACE,
        messages.REDRIVE: {
            "type": "string",
            "pattern": "^.+/[0-9]+/[0-9]+$",
            "description": "set by `auto-topup dlq redrive`: where the dead letter this record "
            "was redriven from was read (topic/partition/offset). A settings event the rules "
            "rejected is judged again once per redrive.",
        },
    },
}

DEAD_LETTER_HEADERS: Schema = {
    "title": "DeadLetterHeaders",
    "type": "object",
    "description": "Headers of a dead-letter record; its key and value are the original "
    "ones, and so are the original record's own headers (kept while they add up to 64 KiB).",
    "properties": {
        messages.DLQ_TOPIC: {"type": "string", "description": "the input topic"},
        messages.DLQ_PARTITION: DIGITS,
        messages.DLQ_OFFSET: DIGITS,
        messages.DLQ_REASON: {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_]*$",
            "description": "a stable snake_case code (docs/rules.md)",
        },
        messages.DLQ_DETAIL: {"type": "string", "description": "human-readable, at most 1,000"},
        messages.DLQ_AT: {"type": "string", "format": "date-time"},
        # Since v2: a value (or key, or the original headers) over 64 KiB is kept truncated.
        messages.DLQ_TRUNCATED: TRUE,
        messages.DLQ_ORIGINAL_SIZE: DIGITS,
        messages.DLQ_ORIGINAL_SHA256: SHA256,
        messages.DLQ_KEY_TRUNCATED: TRUE,
        messages.DLQ_ORIGINAL_KEY_SIZE: DIGITS,
        messages.DLQ_ORIGINAL_KEY_SHA256: SHA256,
        messages.DLQ_HEADERS_DROPPED: DIGITS,
    },
    "required": [
        messages.DLQ_TOPIC,
        messages.DLQ_PARTITION,
        messages.DLQ_OFFSET,
        messages.DLQ_REASON,
        messages.DLQ_DETAIL,
        messages.DLQ_AT,
    ],
}
