"""Outgoing records as outbox rows: output events and dead letters."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Final

from service.contract import messages
from service.contract.codec import MAX_MESSAGE_BYTES, Invalid
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


# What a dead letter keeps of the original record, at most (contract v2: the input limit, so
# that no dead letter is too big to publish). With the dlq_* headers (the detail is at most 1,000
# characters), a dead letter is under 200 KiB: see MAX_RECORD_BYTES in adapters/kafka/producer.py.
DEAD_LETTER_VALUE_BYTES: Final = MAX_MESSAGE_BYTES
DEAD_LETTER_KEY_BYTES: Final = MAX_MESSAGE_BYTES
DEAD_LETTER_HEADER_BYTES: Final = MAX_MESSAGE_BYTES
DETAIL_CHARS: Final = 1000


def _sized(data: bytes | None) -> bytes:
    """The bytes with their length in front (-1: none), so that digests of pairs never collide."""
    if data is None:
        return (-1).to_bytes(8, "big", signed=True)
    return len(data).to_bytes(8, "big", signed=True) + data


def dead_letter_key(record: InputRecord) -> str:
    """The outbox dedupe key of a record's dead letter: where it was read, and a SHA-256 of its
    key and value. A redelivery of the same record maps to the same key (one dead letter); a
    new record at an offset used before (an input topic deleted and re-created) does not.
    (Migration 0007 computes the same digest in SQL for the rows queued before it.)"""
    digest = hashlib.sha256(_sized(record.key) + _sized(record.value)).hexdigest()
    return f"dlq/{record.topic}/{record.partition}/{record.offset}/{digest}"


def _cut(
    data: bytes | None, limit: int, flags: tuple[str, str, str]
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """At most `limit` bytes of `data`; when cut, headers saying so (flag, size, SHA-256)."""
    if data is None or len(data) <= limit:
        return data, []
    truncated, size, sha256 = flags
    return data[:limit], [
        (truncated, b"true"),
        (size, str(len(data)).encode()),
        (sha256, hashlib.sha256(data).hexdigest().encode()),
    ]


def _kept_headers(headers: tuple[tuple[str, bytes], ...]) -> tuple[list[tuple[str, bytes]], int]:
    """The original headers, in order, while they add up to at most DEAD_LETTER_HEADER_BYTES;
    and how many were left out."""
    kept: list[tuple[str, bytes]] = []
    total = 0
    for name, value in headers:
        total += len(name.encode("utf-8", "replace")) + len(value or b"")
        if total > DEAD_LETTER_HEADER_BYTES:
            break
        kept.append((name, value))
    return kept, len(headers) - len(kept)


def dead_letter_record(
    topic: str, record: InputRecord, why: Invalid, now: datetime
) -> OutboxRecord:
    """The original key, value and headers, plus headers saying where it came from and why.
    A value (or key) over the input limit is kept as its first 64 KiB, with dlq_truncated, the
    original size and SHA-256 (contract v2); original headers past 64 KiB are left out."""
    value, value_flags = _cut(
        record.value,
        DEAD_LETTER_VALUE_BYTES,
        (messages.DLQ_TRUNCATED, messages.DLQ_ORIGINAL_SIZE, messages.DLQ_ORIGINAL_SHA256),
    )
    key, key_flags = _cut(
        record.key,
        DEAD_LETTER_KEY_BYTES,
        (
            messages.DLQ_KEY_TRUNCATED,
            messages.DLQ_ORIGINAL_KEY_SIZE,
            messages.DLQ_ORIGINAL_KEY_SHA256,
        ),
    )
    original, dropped = _kept_headers(record.headers)
    added = [
        (messages.DLQ_TOPIC, record.topic.encode()),
        (messages.DLQ_PARTITION, str(record.partition).encode()),
        (messages.DLQ_OFFSET, str(record.offset).encode()),
        (messages.DLQ_REASON, why.reason.encode()),  # a DeadLetterReason, or a rail's own code
        (messages.DLQ_DETAIL, why.detail[:DETAIL_CHARS].encode("utf-8", "replace")),
        (messages.DLQ_AT, now.isoformat().encode()),
        *value_flags,
        *key_flags,
    ]
    if dropped:
        added.append((messages.DLQ_HEADERS_DROPPED, str(dropped).encode()))
    return OutboxRecord(
        dedupe_key=dead_letter_key(record),
        topic=topic,
        key=key,
        value=value,
        headers=tuple((name, _b64(data)) for name, data in original + added),
    )
