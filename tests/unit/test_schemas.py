"""schemas/ is generated from the models, and the JSON Schemas agree with the models."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from service.contract import events, export, messages
from service.contract.codec import Invalid, decode_balance, decode_settings
from service.contract.headers import TRACE
from service.service_layer.outbox import cloudevents_headers
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
        "invoice-status-changed",
        "invoice-requested",
        "credit-issued",
        "top-up-failed",
        "auto-topup-notice",
        "auto-topup-dead-letter",
    }


# The AsyncAPI document: headers, key, examples, names; and the page made from it.

ROOT = SCHEMAS.parent
DOCUMENT: dict[str, Any] = json.loads((SCHEMAS / "asyncapi.json").read_text())
COMPONENTS = DOCUMENT["components"]
MESSAGE_NAMES = {
    "WalletBalanceChanged",
    "SettingsUpdated",
    "InvoiceStatusChanged",
    "InvoiceRequested",
    "CreditIssued",
    "TopUpFailed",
    "AutoTopupNotice",
    "DeadLetter",
}
OUTPUT_MODELS: dict[
    str, type[events.InvoiceRequested] | type[events.CreditIssued] | type[events.TopUpFailed]
] = {
    "InvoiceRequested": events.InvoiceRequested,
    "CreditIssued": events.CreditIssued,
    "TopUpFailed": events.TopUpFailed,
}


def test_committed_reference_page_matches_the_document() -> None:
    page = ROOT / export.REFERENCE_PAGE
    assert page.exists(), "docs/contract-reference.md missing: run `make schemas`"
    assert page.read_text("utf-8") == export.reference(), (
        "docs/contract-reference.md is out of date: run `make schemas`"
    )


def _component(ref: dict[str, str]) -> dict[str, Any]:
    node: Any = DOCUMENT
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def test_every_message_has_headers_a_key_and_examples() -> None:
    assert set(COMPONENTS["messages"]) == MESSAGE_NAMES
    for name, message in COMPONENTS["messages"].items():
        assert message["name"] == message["title"] == name
        assert _component(message["headers"])["type"] == "object"
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string"
        assert message["examples"], name
    assert "correlationId" not in json.dumps(DOCUMENT)


def test_servers_take_the_bootstrap_list_and_name_the_security_schemes() -> None:
    for server in DOCUMENT["servers"].values():
        assert server["host"] == "{bootstrap}"
        assert server["variables"]["bootstrap"]["default"].startswith("127.0.0.1:")
    kinds = {scheme["type"] for scheme in COMPONENTS["securitySchemes"].values()}
    assert kinds == {"scramSha512", "scramSha256", "plain", "X509"}


def _all_schemas() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(where: str, node: Any) -> None:
        if isinstance(node, dict):
            found.append((where, node))
            for key, sub in node.items():
                walk(f"{where}/{key}", sub)
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(f"{where}/{i}", sub)

    for path in sorted(SCHEMAS.glob("*.json")):
        walk(path.name, json.loads(path.read_text()))
    return found


def test_no_null_wrappers_and_no_closed_outputs() -> None:
    for where, node in _all_schemas():
        assert {"type": "null"} not in node.get("anyOf", []), where
        if "examples" not in where:
            assert node.get("additionalProperties") is not False, where


@pytest.mark.parametrize("name", sorted(MESSAGE_NAMES))
def test_examples_are_valid_against_their_schemas(name: str) -> None:
    message = COMPONENTS["messages"][name]
    payload = Draft202012Validator(_component(message["payload"]))
    headers = Draft202012Validator(_component(message["headers"]))
    for example in message["examples"]:
        assert list(payload.iter_errors(example["payload"])) == []
        assert list(headers.iter_errors(example["headers"])) == []


@pytest.mark.parametrize("name", sorted(OUTPUT_MODELS))
def test_output_examples_are_what_the_service_emits(name: str) -> None:
    example = COMPONENTS["messages"][name]["examples"][0]
    event = OUTPUT_MODELS[name].model_validate(example["payload"])
    assert json.loads(messages.encode(event)) == example["payload"]
    sent = {k: base64.b64decode(v).decode() for k, v in cloudevents_headers(event)}
    assert sent == {k: v for k, v in example["headers"].items() if k not in TRACE}


def test_input_examples_are_accepted_by_the_service() -> None:
    for name, decode in (
        ("WalletBalanceChanged", decode_balance),
        ("SettingsUpdated", decode_settings),
    ):
        for example in COMPONENTS["messages"][name]["examples"]:
            raw = json.dumps(example["payload"]).encode()
            key = example["payload"]["customer_id"].encode()
            assert not isinstance(decode(raw, key), Invalid), name
            assert _validator(name_to_topic(name)).is_valid(example["payload"])


def name_to_topic(name: str) -> str:
    return {
        "WalletBalanceChanged": "wallet-balance-changed",
        "SettingsUpdated": "settings-updated",
    }[name]


def test_the_service_still_takes_an_explicit_null_as_absent() -> None:
    """The published schemas have no null; the service's leniency stays as it was."""
    body = {**balance_wire("c-1", "1.00"), "sequence": None, "caused_by": None}
    assert not isinstance(decode_balance(json.dumps(body).encode(), b"c-1"), Invalid)


# The output schemas as first published open (0.12.0), frozen: what a consumer that validates
# holds. Never regenerate them: a later schema must stay acceptable to them.
V1 = Path(__file__).resolve().parents[1] / "contract" / "v1"


@pytest.mark.parametrize("topic", sorted(set(export.OUTPUTS) - {"auto-topup-notice"}))
def test_a_v1_consumer_accepts_a_v2_output_with_new_fields(topic: str) -> None:
    """A consumer validating with the published v1 output schema (the frozen copy) keeps
    accepting what the service emits now, with fields added since (the contract's v2
    amount_mode and fallback_from); a field it requires is still required."""
    name = "".join(part.capitalize() for part in topic.split("-"))
    v1 = Draft202012Validator(json.loads((V1 / f"{topic}.schema.json").read_text()))
    v2 = {
        **COMPONENTS["messages"][name]["examples"][0]["payload"],
        "amount_mode": "to_target",
        "fallback_from": "stripe",
    }
    assert v1.is_valid(v2)
    assert not v1.is_valid({k: v for k, v in v2.items() if k != "amount"})
