"""Outgoing records as outbox rows: output events and dead letters."""

from __future__ import annotations

import base64
from datetime import datetime

from service.contract import messages
from service.contract.codec import Invalid
from service.contract.events import OutputEvent
from service.service_layer.ports import InputRecord, OutboxRecord


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def output_record(topic: str, event: OutputEvent) -> OutboxRecord:
    """An output event, keyed by customer_id; its event id de-duplicates the outbox row."""
    return OutboxRecord(
        dedupe_key=event.event_id,
        topic=topic,
        key=event.customer_id.encode("utf-8"),
        value=messages.encode(event),
        headers=(("content-type", _b64(b"application/json")),),
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
