"""Dead letters the relay can always publish (contract v2), and their de-duplication.

A value over the input limit (64 KiB) is kept as its first 64 KiB with dlq_truncated, the
original size and SHA-256; so are a key and the original headers, so that no dead letter is
larger than the relay's producer and the topics it creates take. Its outbox dedupe key tells a
new record at a reused offset (an input topic re-created) from a redelivery of the same one.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from service.adapters.kafka.producer import MAX_RECORD_BYTES
from service.contract import messages
from service.contract.codec import MAX_MESSAGE_BYTES, Invalid
from service.service_layer.outbox import dead_letter_key, dead_letter_record
from service.service_layer.ports import InputRecord, OutboxRecord

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TOO_LARGE = Invalid("message_too_large", "too large")
DLQ = "auto-topup-dead-letter"


def record(
    value: bytes | None,
    key: bytes | None = b"cust-1",
    headers: tuple[tuple[str, bytes], ...] = (),
) -> InputRecord:
    return InputRecord("wallet-balance-changed", 2, 7, key, value, headers)


def headers(row: OutboxRecord) -> dict[str, bytes]:
    return {name: base64.b64decode(value) for name, value in row.headers}


def size(row: OutboxRecord) -> int:
    return (
        len(row.value or b"")
        + len(row.key or b"")
        + sum(len(n) + len(base64.b64decode(v)) for n, v in row.headers)
    )


def test_a_value_within_the_limit_is_kept_whole_without_truncation_headers() -> None:
    value = b"x" * MAX_MESSAGE_BYTES
    row = dead_letter_record(DLQ, record(value), TOO_LARGE, AT)

    assert row.value == value
    assert row.key == b"cust-1"
    assert not any(name.startswith("dlq_truncated") for name in headers(row))
    assert messages.DLQ_ORIGINAL_SIZE not in headers(row)


def test_a_value_over_the_limit_is_cut_to_64_kib_with_headers_saying_so() -> None:
    value = bytes(range(256)) * (2 * 1024 * 1024 // 256)  # 2 MiB
    row = dead_letter_record(DLQ, record(value), TOO_LARGE, AT)

    assert row.value == value[:MAX_MESSAGE_BYTES]
    got = headers(row)
    assert got[messages.DLQ_TRUNCATED] == b"true"
    assert got[messages.DLQ_ORIGINAL_SIZE] == str(len(value)).encode()
    assert got[messages.DLQ_ORIGINAL_SHA256] == hashlib.sha256(value).hexdigest().encode()
    assert got[messages.DLQ_REASON] == b"message_too_large"
    assert got[messages.DLQ_OFFSET] == b"7"


def test_the_largest_dead_letter_fits_the_relays_bound() -> None:
    huge = b"v" * (3 * 1024 * 1024)
    many = tuple((f"h{i}", b"h" * 1000) for i in range(200))  # 200 KB of headers
    detail = Invalid("schema_violation", "\U0001f4a5" * 5000)  # 4 bytes a character
    row = dead_letter_record(DLQ, record(huge, key=b"k" * 300_000, headers=many), detail, AT)

    assert size(row) < MAX_RECORD_BYTES
    got = headers(row)
    assert got[messages.DLQ_KEY_TRUNCATED] == b"true"
    assert got[messages.DLQ_ORIGINAL_KEY_SIZE] == b"300000"
    kept = [name for name, _ in row.headers if name.startswith("h")]
    assert kept == [f"h{i}" for i in range(len(kept))]  # the first ones, in order
    assert got[messages.DLQ_HEADERS_DROPPED] == str(200 - len(kept)).encode()
    assert 0 < len(kept) < 200


def test_original_headers_within_the_limit_are_all_kept_first() -> None:
    original = (("traceparent", b"00-abc-def-01"), ("x-empty", b""))
    row = dead_letter_record(DLQ, record(b"{oops", headers=original), TOO_LARGE, AT)

    assert [(n, base64.b64decode(v)) for n, v in row.headers[:2]] == list(original)
    assert messages.DLQ_HEADERS_DROPPED not in headers(row)


def test_a_redelivery_maps_to_the_same_dedupe_key() -> None:
    first = dead_letter_record(DLQ, record(b"{oops"), TOO_LARGE, AT)
    again = dead_letter_record(DLQ, record(b"{oops"), Invalid("invalid_json", "x"), AT)

    assert first.dedupe_key == again.dedupe_key
    assert first.dedupe_key.startswith("dlq/wallet-balance-changed/2/7/")


def test_a_new_record_at_a_reused_offset_gets_its_own_dedupe_key() -> None:
    old = dead_letter_key(record(b"{oops"))

    assert dead_letter_key(record(b"{oops!")) != old  # another value
    assert dead_letter_key(record(b"{oops", key=b"cust-2")) != old  # another key
    # The key and the value are told apart: moving bytes from one to the other is new too.
    assert dead_letter_key(record(b"s{oops", key=b"cust-1")) != dead_letter_key(
        record(b"{oops", key=b"cust-1s")
    )
    assert dead_letter_key(record(None, key=b"")) != dead_letter_key(record(b"", key=None))


def test_the_dedupe_key_hashes_the_original_not_the_truncated_value() -> None:
    base = b"x" * (MAX_MESSAGE_BYTES + 10)
    assert dead_letter_key(record(base + b"a")) != dead_letter_key(record(base + b"b"))
