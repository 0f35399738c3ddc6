"""Outgoing records as outbox rows: output events and dead letters."""

from __future__ import annotations

import base64
from datetime import datetime

from service.contract import messages
from service.contract.codec import Invalid
from service.contract.events import OutputEvent
from service.contract.types import format_instant
from service.service_layer.ports import InputRecord, OutboxRecord


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def cloudevents_headers(event: OutputEvent) -> tuple[tuple[str, str], ...]:
    """The CloudEvents Kafka protocol binding, binary content mode: the attributes as ce_*
    headers, the payload unchanged (the contract's JSON)."""
    attributes = (
        ("ce_specversion", messages.CE_SPECVERSION),
        ("ce_id", event.event_id),
        ("ce_type", messages.ce_type(event)),
        ("ce_source", messages.CE_SOURCE),
        ("ce_subject", event.customer_id),
        ("ce_time", format_instant(event.emitted_at)),
        ("content-type", "application/json"),
    )
    return tuple((name, _b64(value.encode("utf-8"))) for name, value in attributes)


def output_record(
    topic: str, event: OutputEvent, extra_headers: tuple[tuple[str, str], ...] = ()
) -> OutboxRecord:
    """An output event, keyed by customer_id; its event id de-duplicates the outbox row.
    `extra_headers` (name, base64 value) are added as they are (trace context)."""
    return OutboxRecord(
        dedupe_key=event.event_id,
        topic=topic,
        key=event.customer_id.encode("utf-8"),
        value=messages.encode(event),
        headers=cloudevents_headers(event) + extra_headers,
    )


def dead_letter_record(
    topic: str, record: InputRecord, why: Invalid, now: datetime
) -> OutboxRecord:
    """The original key, value and headers, plus headers saying where it came from and why."""
    headers = [(name, _b64(value)) for name, value in record.headers]
    headers += [
        (messages.DLQ_TOPIC, _b64(record.topic.encode())),
        (messages.DLQ_PARTITION, _b64(str(record.partition).encode())),
        (messages.DLQ_OFFSET, _b64(str(record.offset).encode())),
        (messages.DLQ_REASON, _b64(why.reason.encode())),
        (messages.DLQ_DETAIL, _b64(why.detail[:1000].encode("utf-8", "replace"))),
        (messages.DLQ_AT, _b64(now.isoformat().encode())),
    ]
    return OutboxRecord(
        dedupe_key=f"dlq/{record.topic}/{record.partition}/{record.offset}",
        topic=topic,
        key=record.key,
        value=record.value,
        headers=tuple(headers),
    )
