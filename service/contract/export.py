"""Writes schemas/ (one JSON Schema per event and the AsyncAPI document) and
docs/contract-reference.md (the document as a page to read).

python -m service.contract.export schemas          # write
python -m service.contract.export schemas --check  # exit 1 when the files differ
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from service.contract import events, headers
from service.contract.asyncapi import document
from service.contract.published import document_schema, event_schema
from service.contract.reference import page

INPUTS: dict[str, type[BaseModel]] = {
    "wallet-balance-changed": events.WalletBalanceChanged,
    "settings-updated": events.SettingsUpdated,
    "invoice-status-changed": events.InvoiceStatusChanged,
}
OUTPUTS: dict[str, type[BaseModel]] = {
    "invoice-requested": events.InvoiceRequested,
    "credit-issued": events.CreditIssued,
    "top-up-failed": events.TopUpFailed,
    "auto-topup-notice": events.AutoTopupNotice,
}
# The human-readable page of the document, beside the schemas' folder.
REFERENCE_PAGE = Path("docs") / "contract-reference.md"


def _schema(name: str, model: type[BaseModel], direction: Literal["in", "out"]) -> dict[str, Any]:
    return document_schema(name, event_schema(name, model, direction))


def files() -> dict[str, str]:
    """Every file of schemas/, by name, as its text."""
    out = {f"{n}.schema.json": _schema(n, m, "in") for n, m in INPUTS.items()}
    out.update({f"{n}.schema.json": _schema(n, m, "out") for n, m in OUTPUTS.items()})
    out["auto-topup-dead-letter.headers.schema.json"] = document_schema(
        "auto-topup-dead-letter.headers", headers.DEAD_LETTER_HEADERS
    )
    out["asyncapi.json"] = document()
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in out.items()}


def reference() -> str:
    """docs/contract-reference.md, the human-readable page of the AsyncAPI document."""
    return page(document())


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "schemas")
    check = "--check" in argv
    stale = []
    wanted = {folder / name: text for name, text in files().items()}
    wanted[folder.resolve().parent / REFERENCE_PAGE] = reference()
    for path, text in wanted.items():
        name = path.name
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
