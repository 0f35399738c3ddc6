"""Input bytes to domain events (or a dead-letter reason); output events to bytes."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NoReturn

from pydantic import ValidationError

from service.contract.events import InvoiceStatusChanged, SettingsUpdated, WalletBalanceChanged
from service.contract.types import (
    ID_PATTERN,
    MAX_COUNT,
    bounded_money,
    plain_decimal,
    storable_instant,
    text_id,
)
from service.domain.currencies import ISO_4217
from service.domain.model import (
    AmountMode,
    Amounts,
    BalanceChanged,
    InvoiceStatus,
    Origin,
    PaymentMethod,
)
from service.domain.model import InvoiceStatusChanged as InvoiceStatusCommand
from service.domain.model import SettingsUpdated as SettingsCommand
from service.domain.reasons import DeadLetterReason

# Namespace of output event ids: uuid5(OUTPUT_NAMESPACE, f"{daily_key}|{event_type}").
OUTPUT_NAMESPACE = uuid.UUID("6f1d3c1e-5a0e-4c52-9a53-8a4f0f5b2d17")

MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an input message can never be accepted (its dead-letter reason)."""

    reason: str  # a DeadLetterReason (a rule's rejection gives its reason as a string)
    detail: str


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


# parse_float=Decimal: a JSON number is parsed exactly, never through a binary float. One
# decoder for all messages (json.loads with arguments would build one per call).
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)


def _parse_json(raw: bytes) -> Any:
    return _DECODER.decode(raw.decode("utf-8"))


def _loads(raw: bytes | None) -> dict[str, Any] | Invalid:
    if raw is None:
        return Invalid(DeadLetterReason.EMPTY_VALUE, "the message has no value (a tombstone?)")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Invalid(
            DeadLetterReason.MESSAGE_TOO_LARGE, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}"
        )
    try:
        body = _parse_json(raw)
    except UnicodeDecodeError as exc:
        return Invalid(DeadLetterReason.INVALID_ENCODING, f"not UTF-8: {exc}")
    except (ValueError, RecursionError) as exc:
        return Invalid(DeadLetterReason.INVALID_JSON, str(exc)[:300])
    if not isinstance(body, dict):
        return Invalid(
            DeadLetterReason.INVALID_JSON, f"expected a JSON object, got {type(body).__name__}"
        )
    return body


def _schema_error(exc: ValidationError) -> Invalid:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return Invalid(DeadLetterReason.SCHEMA_VIOLATION, "; ".join(parts))


def _key_error(key: bytes | None, customer_id: str) -> Invalid | None:
    if key is None:
        return Invalid(
            DeadLetterReason.KEY_MISMATCH, "the message has no key; the key must be customer_id"
        )
    if key != customer_id.encode("utf-8"):
        shown = key[:140].decode("utf-8", "replace")
        return Invalid(
            DeadLetterReason.KEY_MISMATCH, f"key {shown!r} is not customer_id {customer_id!r}"
        )
    return None


_ID = re.compile(ID_PATTERN)
# RFC 3339 with 'T', at most microseconds and an offset: what datetime.fromisoformat reads
# exactly as the pydantic model does.
_PLAIN_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def _plain_balance(body: dict[str, Any], key: bytes | None) -> BalanceChanged | None:
    """The common shape of a balance event, checked without the model: every field a string of
    the plainest form (sequence an int). Anything else returns None and goes through the model,
    which accepts the same messages with the same result (tests/unit/test_codec_fast.py)."""
    event_id = body.get("event_id")
    customer_id = body.get("customer_id")
    currency = body.get("currency")
    balance = body.get("balance")
    at = body.get("occurred_at")
    sequence = body.get("sequence")
    caused_by = body.get("caused_by")
    if (
        type(event_id) is not str
        or not text_id(event_id)
        or not (caused_by is None or (type(caused_by) is str and text_id(caused_by)))
        or type(customer_id) is not str
        or not _ID.match(customer_id)
        or type(currency) is not str
        or currency not in ISO_4217
        or type(balance) is not str
        or not plain_decimal(balance)
        or type(at) is not str
        or not _PLAIN_INSTANT.match(at)
        or not (sequence is None or (type(sequence) is int and 0 <= sequence <= MAX_COUNT))
        or key is None
        or key != customer_id.encode("utf-8")
    ):
        return None
    try:
        amount = bounded_money(Decimal(balance))
        occurred_at = datetime.fromisoformat(at)
    except ValueError:
        return None
    if not storable_instant(occurred_at):
        return None  # the model says why
    return BalanceChanged(event_id, occurred_at, customer_id, currency, amount, sequence, caused_by)


def decode_balance(raw: bytes | None, key: bytes | None) -> BalanceChanged | Invalid:
    body = _loads(raw)
    if isinstance(body, Invalid):
        return body
    plain = _plain_balance(body, key)
    if plain is not None:
        return plain
    try:
        wire = WalletBalanceChanged.model_validate(body)
    except ValidationError as exc:
        return _schema_error(exc)
    return _key_error(key, wire.customer_id) or BalanceChanged(
        event_id=wire.event_id,
        occurred_at=wire.occurred_at,
        customer_id=wire.customer_id,
        currency=wire.currency,
        balance=wire.balance,
        sequence=wire.sequence,
        caused_by=wire.caused_by,
    )


def decode_settings(raw: bytes | None, key: bytes | None) -> SettingsCommand | Invalid:
    body = _loads(raw)
    if isinstance(body, Invalid):
        return body
    try:
        wire = SettingsUpdated.model_validate(body)
    except ValidationError as exc:
        return _schema_error(exc)
    return _key_error(key, wire.customer_id) or SettingsCommand(
        event_id=wire.event_id,
        occurred_at=wire.occurred_at,
        customer_id=wire.customer_id,
        origin=Origin(wire.origin),
        payment_method=PaymentMethod(wire.payment_method),
        auto_trigger=wire.auto_trigger,
        trigger_amount=wire.trigger_amount,
        limit_threshold=wire.limit_threshold,
        currency=wire.currency,
        timezone=wire.timezone,
        partner_id=wire.partner_id,
        stripe_customer_id=wire.stripe_customer_id,
        stripe_payment_method_id=wire.stripe_payment_method_id,
        version=wire.version,
        amounts=Amounts(
            AmountMode(wire.amount_mode), wire.target_balance, wire.max_amount, wire.monthly_cap
        ),
        fallback_method=PaymentMethod(wire.fallback_method) if wire.fallback_method else None,
        max_open_invoices=wire.max_open_invoices,
    )


def decode_invoice_status(raw: bytes | None, key: bytes | None) -> InvoiceStatusCommand | Invalid:
    body = _loads(raw)
    if isinstance(body, Invalid):
        return body
    try:
        wire = InvoiceStatusChanged.model_validate(body)
    except ValidationError as exc:
        return _schema_error(exc)
    return _key_error(key, wire.customer_id) or InvoiceStatusCommand(
        event_id=wire.event_id,
        occurred_at=wire.occurred_at,
        customer_id=wire.customer_id,
        invoice_request_id=wire.invoice_request_id,
        status=InvoiceStatus(wire.status),
    )


def output_event_id(customer_id: str, business_date: date, event_type: str) -> str:
    """Deterministic id: one daily key and one event type always give the same id."""
    return str(uuid.uuid5(OUTPUT_NAMESPACE, f"{customer_id}/{business_date}|{event_type}"))


def notice_event_id(customer_id: str, notice_type: str, period: str) -> str:
    """Deterministic id of a notice: one per (customer_id, type, period)."""
    return str(uuid.uuid5(OUTPUT_NAMESPACE, f"{customer_id}|{notice_type}|{period}"))
