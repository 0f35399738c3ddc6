"""Decoding input bytes: exact money, aware timestamps, keys, and clear reasons."""

import json
from decimal import Decimal
from typing import Any

import pytest

from service.contract.codec import Invalid, decode_balance, decode_settings, output_event_id
from service.domain.model import (
    AmountMode,
    Amounts,
    BalanceChanged,
    PaymentMethod,
    SettingsUpdated,
)
from tests.factories import balance_wire, dumps, settings_wire

KEY = b"cust-1"


def test_valid_balance_decodes() -> None:
    event = decode_balance(dumps(balance_wire("cust-1", "12.50", sequence=3)), KEY)
    assert isinstance(event, BalanceChanged)
    assert event.balance == Decimal("12.50")
    assert event.sequence == 3
    assert event.occurred_at.tzinfo is not None


def test_json_number_money_is_parsed_exactly() -> None:
    raw = (
        b'{"event_id":"e1","occurred_at":"2026-11-25T10:00:00Z","customer_id":"cust-1",'
        b'"currency":"USD","balance":12345678901234567.123456789}'
    )
    event = decode_balance(raw, KEY)
    assert isinstance(event, BalanceChanged)
    assert event.balance == Decimal("12345678901234567.123456789")
    raw_small = raw.replace(b"12345678901234567.123456789", b"0.1")
    small = decode_balance(raw_small, KEY)
    assert isinstance(small, BalanceChanged)
    assert small.balance == Decimal("0.1")  # not 0.1000000000000000055511151231257827


def test_unknown_fields_are_ignored() -> None:
    event = decode_balance(dumps(balance_wire("cust-1", "1", future_field={"x": 1})), KEY)
    assert isinstance(event, BalanceChanged)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.update(occurred_at="2026-11-25T10:00:00"), "schema_violation"),
        (lambda b: b.update(occurred_at=1764064800), "schema_violation"),
        (lambda b: b.update(balance="1e5"), "schema_violation"),
        (lambda b: b.update(balance="12,50"), "schema_violation"),
        (lambda b: b.update(balance=True), "schema_violation"),
        (lambda b: b.update(balance="NaN"), "schema_violation"),
        (lambda b: b.update(balance="1" * 30), "schema_violation"),
        (lambda b: b.update(currency="usd"), "schema_violation"),
        (lambda b: b.update(customer_id="a b"), "schema_violation"),
        (lambda b: b.update(customer_id="x" * 129), "schema_violation"),
        (lambda b: b.update(sequence=-1), "schema_violation"),
        (lambda b: b.update(sequence="5"), "schema_violation"),
        (lambda b: b.update(sequence=1.5), "schema_violation"),
        (lambda b: b.pop("event_id"), "schema_violation"),
        (lambda b: b.update(customer_id="other"), "key_mismatch"),
    ],
)
def test_invalid_balances_have_a_reason(mutate: object, reason: str) -> None:
    body = balance_wire("cust-1", "1.00")
    mutate(body)  # type: ignore[operator]
    result = decode_balance(dumps(body), KEY)
    assert isinstance(result, Invalid), result
    assert result.reason == reason
    assert result.detail


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"balance": NaN}', "invalid_json"),
        (b"\xff\xfe", "invalid_encoding"),
        (None, "empty_value"),
        (b"{" * 100_000, "message_too_large"),
    ],
)
def test_unreadable_messages(raw: bytes | None, reason: str) -> None:
    result = decode_balance(raw, KEY)
    assert isinstance(result, Invalid)
    assert result.reason == reason


def test_missing_key_is_a_key_mismatch() -> None:
    result = decode_balance(dumps(balance_wire("cust-1", "1")), None)
    assert isinstance(result, Invalid)
    assert result.reason == "key_mismatch"


def test_settings_decode_with_conditional_fields() -> None:
    ok = decode_settings(
        dumps(
            settings_wire(
                "cust-1",
                method="master_account",
                partner_id="p-1",
                timezone="Asia/Kolkata",
                version=2,
            )
        ),
        KEY,
    )
    assert isinstance(ok, SettingsUpdated)
    assert ok.payment_method is PaymentMethod.MASTER_ACCOUNT
    no_partner = decode_settings(dumps(settings_wire("cust-1", method="master_account")), KEY)
    assert isinstance(no_partner, Invalid)
    assert "partner_id" in no_partner.detail
    no_card = decode_settings(
        dumps(settings_wire("cust-1", method="stripe", origin="online_top_up")), KEY
    )
    assert isinstance(no_card, Invalid)
    assert "stripe_customer_id" in no_card.detail


@pytest.mark.parametrize("field", ["trigger_amount"])
@pytest.mark.parametrize("value", ["0", "0.00", "-5", 0])
def test_trigger_amount_must_be_positive(field: str, value: object) -> None:
    body = settings_wire("cust-1")
    body[field] = value
    result = decode_settings(json.dumps(body).encode(), KEY)
    assert isinstance(result, Invalid)
    assert result.reason == "schema_violation"


def test_auto_trigger_must_be_a_boolean() -> None:
    result = decode_settings(dumps(settings_wire("cust-1", auto="true")), KEY)
    assert isinstance(result, Invalid)


def test_output_event_ids_are_deterministic() -> None:
    from datetime import date

    a = output_event_id("cust-1", date(2026, 11, 25), "invoice-requested")
    assert a == output_event_id("cust-1", date(2026, 11, 25), "invoice-requested")
    assert a != output_event_id("cust-1", date(2026, 11, 26), "invoice-requested")
    assert a != output_event_id("cust-1", date(2026, 11, 25), "top-up-failed")


def test_v2_settings_are_decoded_exactly() -> None:
    body = settings_wire(
        "cust-1",
        payment_method="cheque_tt",
        amount_mode="to_target",
        target_balance="250.00",
        max_amount="200.10",
        monthly_cap="1000.00",
        fallback_method="master_account",
        partner_id="p-1",
        max_open_invoices=2,
    )
    got = decode_settings(dumps(body), b"cust-1")
    assert not isinstance(got, Invalid)
    assert got.amounts == Amounts(
        AmountMode.TO_TARGET, Decimal("250.00"), Decimal("200.10"), Decimal("1000.00")
    )
    assert got.fallback_method is PaymentMethod.MASTER_ACCOUNT
    assert got.max_open_invoices == 2


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"amount_mode": "to_target"}, "target_balance is required"),
        ({"amount_mode": "to_target", "target_balance": "10.00"}, "above limit_threshold"),
        ({"fallback_method": "cheque_tt", "payment_method": "cheque_tt"}, "must not be the same"),
        ({"fallback_method": "master_account"}, "partner_id is required"),
        ({"max_open_invoices": 0}, "max_open_invoices"),
        ({"max_amount": "0"}, "max_amount"),
        ({"monthly_cap": "-5"}, "monthly_cap"),
        ({"fallback_method": "stripe", "payment_method": "cheque_tt"}, "fallback_method"),
    ],
)
def test_inconsistent_v2_settings_are_dead_lettered(extra: dict[str, Any], words: str) -> None:
    body = settings_wire("cust-1", **{"limit_threshold": "10.00", **extra})
    got = decode_settings(dumps(body), b"cust-1")
    assert isinstance(got, Invalid)
    assert got.reason == "schema_violation"
    assert words in got.detail


def test_amount_mode_fixed_is_the_v1_behaviour() -> None:
    body = settings_wire("cust-1", amount_mode="fixed")
    assert not isinstance(decode_settings(dumps(body), b"cust-1"), Invalid)
