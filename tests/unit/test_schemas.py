"""schemas/ is generated from the models, and the JSON Schemas agree with the models."""

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from service.contract import export
from service.contract.codec import Invalid, decode_balance, decode_settings
from tests.factories import balance_wire, settings_wire

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    for name, text in export.files().items():
        path = SCHEMAS / name
        assert path.exists(), f"{name} missing: run `make schemas`"
        assert path.read_text("utf-8") == text, f"{name} is out of date: run `make schemas`"


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


BALANCES: list[tuple[dict[str, Any], bool]] = [
    (balance_wire("c-1", "1.00"), True),
    (balance_wire("c-1", "-3.5", sequence=0), True),
    (balance_wire("c-1", "1.00", occurred_at="2026-11-25T10:00:00"), False),
    (balance_wire("c-1", "1.00", occurred_at="2026-11-25T10:00:00+05:30"), True),
    (balance_wire("c-1", "1e5"), False),
    (balance_wire("c-1", "1.00", currency="usd"), False),
    (balance_wire("c-1", "1.00", sequence=-1), False),
    ({"event_id": "e", "customer_id": "c-1"}, False),
]
SETTINGS: list[tuple[dict[str, Any], bool]] = [
    (settings_wire("c-1"), True),
    (settings_wire("c-1", method="master_account", partner_id="p-1"), True),
    (settings_wire("c-1", method="master_account"), False),
    (
        settings_wire(
            "c-1",
            method="stripe",
            origin="online_top_up",
            stripe_customer_id="cus_1",
            stripe_payment_method_id="pm_1",
        ),
        True,
    ),
    (settings_wire("c-1", method="stripe", origin="online_top_up"), False),
    (
        settings_wire(
            "c-1",
            method="cheque_tt",
            origin="online_top_up",
            stripe_customer_id="cus_1",
            stripe_payment_method_id="pm_1",
        ),
        False,
    ),
    (settings_wire("c-1", trigger="0"), False),
    (settings_wire("c-1", trigger="0.00"), False),
    (settings_wire("c-1", method="bank"), False),
    (settings_wire("c-1", auto="yes"), False),
]


@pytest.mark.parametrize(("body", "valid"), BALANCES)
def test_balance_schema_agrees_with_the_model(body: dict[str, Any], valid: bool) -> None:
    decoded = decode_balance(json.dumps(body).encode(), b"c-1")
    assert _validator("wallet-balance-changed").is_valid(body) is valid
    assert (not isinstance(decoded, Invalid)) is valid


@pytest.mark.parametrize(("body", "valid"), SETTINGS)
def test_settings_schema_agrees_with_the_model(body: dict[str, Any], valid: bool) -> None:
    assert _validator("settings-updated").is_valid(body) is valid
    decoded = decode_settings(json.dumps(body).encode(), b"c-1")
    assert (not isinstance(decoded, Invalid)) is valid


def test_asyncapi_names_every_topic() -> None:
    doc = json.loads((SCHEMAS / "asyncapi.json").read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {
        "wallet-balance-changed",
        "settings-updated",
        "invoice-requested",
        "credit-issued",
        "top-up-failed",
        "auto-topup-dead-letter",
    }
