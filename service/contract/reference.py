"""docs/contract-reference.md: the AsyncAPI document as a page to read (`make schemas`)."""

from __future__ import annotations

import json
from typing import Any

Schema = dict[str, Any]

HEAD = """# Contract reference

Generated from [schemas/asyncapi.json](../schemas/asyncapi.json) by `make schemas`; do not edit
by hand (`tests/unit/test_schemas.py` fails when it differs). What the events mean, the
guarantees and the compatibility policy are in [contract.md](contract.md).
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(schema: Schema) -> str:
    kind = schema.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(str(k) for k in kinds if k)
    if "format" in schema:
        text += f" ({schema['format']})"
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        values = schema["enum"]
        shown = ", ".join(f"`{v}`" for v in values[:6])
        return shown + (f", ... ({len(values)} values)" if len(values) > 6 else "")
    return text


def _words(schema: Schema) -> str:
    parts = [str(schema.get("description", "")).rstrip(".")]
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern']}`")
    for word in ("minimum", "maximum", "minLength", "maxLength"):
        if word in schema:
            parts.append(f"{word} {schema[word]}")
    return "; ".join(p for p in parts if p)


def _fields(schema: Schema) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | notes |", "|---|---|---|---|"]
    for name, sub in schema.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_cell(_type(sub))} | {'yes' if name in required else 'no'} "
            f"| {_cell(_words(sub))} |"
        )
    if schema.get("type") == "string":
        rows.append(f"| (the value) | string | yes | {_cell(schema.get('description', ''))} |")
    return rows


def _resolve(doc: Schema, ref: Schema) -> Schema:
    node: Any = doc
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def _message(doc: Schema, channel: Schema, operation: Schema) -> list[str]:
    ref = next(iter(channel["messages"].values()))
    message = _resolve(doc, ref)
    payload = _resolve(doc, message["payload"])
    headers = _resolve(doc, message["headers"])
    key = message["bindings"]["kafka"]["key"]
    lines = [
        f"## {message['name']}: `{channel['address']}`",
        "",
        f"The service **{operation['action']}s** it. {channel['description']}",
        "",
        f"Content type `{message['contentType']}`. Key: {key['description'].rstrip('.')}.",
        "",
        f"### Value ({payload['title']})",
        "",
        *_fields(payload),
        "",
        f"### Headers ({headers['title']})",
        "",
        *_fields(headers),
        "",
    ]
    for example in message.get("examples", []):
        body = example["payload"]
        lines += [
            f"### Example: {example['name']}",
            "",
            example["summary"] + ".",
            "",
            "```json",
            body if isinstance(body, str) else json.dumps(body, indent=2),
            "```",
            "",
        ]
    return lines


def _servers(doc: Schema) -> list[str]:
    rows = [
        "## Servers",
        "",
        "| server | host | protocol | security | notes |",
        "|---|---|---|---|---|",
    ]
    for name, server in doc["servers"].items():
        security = ", ".join(r["$ref"].rsplit("/", 1)[1] for r in server.get("security", []))
        defaults = "; ".join(
            f"`{{{var}}}` default `{v['default']}`" for var, v in server["variables"].items()
        )
        rows.append(
            f"| {name} | `{server['host']}` ({defaults}) | {server['protocol']} "
            f"| {security or 'none'} | {_cell(server['description'])} |"
        )
    rows += ["", "| security scheme | type | settings |", "|---|---|---|"]
    for name, scheme in doc["components"]["securitySchemes"].items():
        rows.append(f"| {name} | {scheme['type']} | {_cell(scheme['description'])} |")
    return [*rows, ""]


def page(doc: Schema) -> str:
    """The page of an AsyncAPI 3 document as built by asyncapi.document()."""
    info = doc["info"]
    lines = [HEAD, f"AsyncAPI {doc['asyncapi']}, {info['title']} {info['version']}.", ""]
    lines += [info["description"], "", *_servers(doc)]
    for operation in doc["operations"].values():
        channel = _resolve(doc, operation["channel"])
        lines += _message(doc, channel, operation)
    return "\n".join(lines).rstrip("\n") + "\n"
