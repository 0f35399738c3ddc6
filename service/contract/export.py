"""Writes schemas/: one JSON Schema per event and the AsyncAPI document.

python -m service.contract.export schemas          # write
python -m service.contract.export schemas --check  # exit 1 when the files differ
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.contract import events
from service.contract.asyncapi import document

INPUTS: dict[str, type[BaseModel]] = {
    "wallet-balance-changed": events.WalletBalanceChanged,
    "settings-updated": events.SettingsUpdated,
}
OUTPUTS: dict[str, type[BaseModel]] = {
    "invoice-requested": events.InvoiceRequested,
    "credit-issued": events.CreditIssued,
    "top-up-failed": events.TopUpFailed,
}
DEAD_LETTER_HEADERS: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "auto-topup-dead-letter headers",
    "description": "Headers of a dead-letter record; its key and value are the original ones.",
    "type": "object",
    "properties": {
        "dlq_original_topic": {"type": "string"},
        "dlq_original_partition": {"type": "string", "pattern": "^[0-9]+$"},
        "dlq_original_offset": {"type": "string", "pattern": "^[0-9]+$"},
        "dlq_reason": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "dlq_detail": {"type": "string"},
        "dlq_dead_lettered_at": {"type": "string", "format": "date-time"},
        # Since v2: a value (or key, or the original headers) over 64 KiB is kept truncated.
        "dlq_truncated": {"type": "string", "const": "true"},
        "dlq_original_size": {"type": "string", "pattern": "^[0-9]+$"},
        "dlq_original_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "dlq_key_truncated": {"type": "string", "const": "true"},
        "dlq_original_key_size": {"type": "string", "pattern": "^[0-9]+$"},
        "dlq_original_key_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "dlq_headers_dropped": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "required": [
        "dlq_original_topic",
        "dlq_original_partition",
        "dlq_original_offset",
        "dlq_reason",
        "dlq_detail",
        "dlq_dead_lettered_at",
    ],
}


def _schema(name: str, model: type[BaseModel], mode: str) -> dict[str, Any]:
    body = model.model_json_schema(mode="validation" if mode == "in" else "serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{name}.schema.json",
        **body,
    }


def files() -> dict[str, str]:
    out = {f"{n}.schema.json": _schema(n, m, "in") for n, m in INPUTS.items()}
    out.update({f"{n}.schema.json": _schema(n, m, "out") for n, m in OUTPUTS.items()})
    out["auto-topup-dead-letter.headers.schema.json"] = DEAD_LETTER_HEADERS
    out["asyncapi.json"] = document()
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in out.items()}


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "schemas")
    check = "--check" in argv
    stale = []
    for name, text in files().items():
        path = folder / name
        if check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, "utf-8")
    if stale:
        print("schemas out of date (run `make schemas`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
