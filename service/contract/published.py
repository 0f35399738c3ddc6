"""The JSON Schemas as published in schemas/: what other teams validate and generate code from.

The pydantic models in events.py are what the service accepts and emits; this module only
changes how they are written down, never what goes on the wire:

- the title of each event is its PascalCase name (CreditIssued, not credit-issued), so that
  code generators name their classes well (the kebab-case name stays the topic's and the
  CloudEvents type's);
- an optional field is a plain property that is not required, not `anyOf [X, null]`: the
  service never sends null, and a producer leaves an absent field out (the service also takes
  an explicit null on input as absent, a leniency that is not part of the contract);
- an output schema is open to new fields (no `additionalProperties: false`): a consumer that
  validates with it keeps accepting events that carry fields added later (docs/contract.md,
  "Compatibility").
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel

Schema = dict[str, Any]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# JSON Schema keywords whose value is a map of names to schemas, or a list of schemas.
_NAMED = ("properties", "$defs", "patternProperties")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SINGLE = ("items", "if", "then", "else", "not", "additionalProperties", "contains")


def pascal(name: str) -> str:
    """credit-issued -> CreditIssued; top-up-failed -> TopUpFailed."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))


def _without_null(schema: Schema) -> Schema:
    """`anyOf [X, {type: null}]` (pydantic's `X | None`) as X itself, keeping the outer words
    (description, ...); a `default: null` goes, since absent is the default."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) == 1 and len(kept) < len(options):
            outer = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            return {**kept[0], **outer}
    if "default" in schema and schema["default"] is None:
        return {k: v for k, v in schema.items() if k != "default"}
    return schema


def _tidy(schema: Any, top: bool, name: str = "") -> Any:
    """Every sub-schema without null wrappers, and without the titles pydantic gives each
    property ("Customer Id"), which generators would turn into types of their own; but an
    enumeration of several values is a type: it is named after its property (PaymentMethod)."""
    if not isinstance(schema, dict):
        return schema
    out = _without_null(schema)
    if not top:
        out = {k: v for k, v in out.items() if k != "title"}
        if name and len(out.get("enum", ())) > 1:
            out["title"] = pascal(name)
    for word in _NAMED:
        if isinstance(out.get(word), dict):
            out[word] = {key: _tidy(sub, False, key) for key, sub in out[word].items()}
    for word in _LISTS:
        if isinstance(out.get(word), list):
            out[word] = [_tidy(sub, False) for sub in out[word]]
    for word in _SINGLE:
        if isinstance(out.get(word), dict):
            out[word] = _tidy(out[word], False)
    return out


def for_generators(schema: Schema) -> Schema:
    """The payload as the AsyncAPI document gives it, for code generators: a value the service
    takes as a string or a number (an input amount) is a string, the contract's form (the number
    stays accepted, and is said so); the conditional rules (if/then), which generators merge
    into nonsense, are left to the event's own JSON Schema in schemas/ and said in words."""
    out = {k: v for k, v in schema.items() if k != "allOf"}
    properties = {}
    for key, sub in out.get("properties", {}).items():
        if sub.get("type") == ["string", "number"]:
            note = "a decimal string (a JSON number is accepted too, parsed exactly)"
            words = "; ".join(w for w in (sub.get("description"), note) if w)
            sub = {**sub, "type": "string", "description": words}
        properties[key] = sub
    if "properties" in out:
        out["properties"] = properties
    if "allOf" in schema:
        out["description"] = f"{out.get('description', '')} {RULES_IN_WORDS}".strip()
    return out


RULES_IN_WORDS = (
    "partner_id is required when payment_method is master_account; stripe_customer_id and "
    "stripe_payment_method_id are required when origin is online_top_up, and then "
    "payment_method is stripe; target_balance is required when amount_mode is to_target, and "
    "partner_id when fallback_method is master_account (the if/then rules of "
    "schemas/settings-updated.schema.json). Beyond the schema: target_balance must be above "
    "limit_threshold, and fallback_method must differ from payment_method."
)


def event_schema(name: str, model: type[BaseModel], direction: Literal["in", "out"]) -> Schema:
    """The published JSON Schema of one event (without $schema/$id)."""
    mode: Literal["validation", "serialization"] = (
        "validation" if direction == "in" else "serialization"
    )
    body = _tidy(copy.deepcopy(model.model_json_schema(mode=mode)), True)
    body["title"] = pascal(name)
    if direction == "out":
        body.pop("additionalProperties", None)
    return dict(body)


def document_schema(name: str, body: Schema) -> Schema:
    """A schema as a file of its own in schemas/."""
    return {"$schema": DRAFT, "$id": f"{name}.schema.json", **body}
