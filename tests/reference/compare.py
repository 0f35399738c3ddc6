"""The chaos run's verdict: what the service published against what the contract decides."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from tests.reference.contract import Reference


def compare(
    expected: Reference,
    published: list[dict[str, Any]],
    kinds: list[str],
    mismatches: list[str] | None = None,
) -> dict[str, int]:
    """lost, doubled and divergent decisions, from what was published (event, kind) pairs.
    Each daily key counted is described in `mismatches`, if given (a failed run says which)."""
    said = mismatches if mismatches is not None else []
    by_key: dict[tuple[str, date], set[str]] = {}
    seen: dict[tuple[str, date], tuple[str, dict[str, Any]]] = {}
    for kind, event in zip(kinds, published, strict=True):
        key = (event["customer_id"], date.fromisoformat(event["business_date"]))
        body = {k: v for k, v in event.items() if k != "emitted_at"}
        by_key.setdefault(key, set()).add(json.dumps(body, sort_keys=True) + kind)
        seen[key] = (kind, event)
    lost = len(expected.days.keys() - seen.keys())
    doubled = sum(1 for versions in by_key.values() if len(versions) > 1)
    divergent = len(seen.keys() - expected.days.keys())
    for key in sorted(expected.days.keys() - seen.keys()):
        said.append(f"lost {key[0]} {key[1]}: expected {expected.days[key]}")
    for key in sorted(k for k, versions in by_key.items() if len(versions) > 1):
        said.append(f"doubled {key[0]} {key[1]}: {sorted(by_key[key])}")
    for key in sorted(seen.keys() - expected.days.keys()):
        said.append(f"unexpected {key[0]} {key[1]}: published {seen[key][0]} {seen[key][1]}")
    for key, want in expected.days.items():
        if key not in seen:
            continue
        kind, got = seen[key]
        fields = {
            "kind": kind,
            "amount": got["amount"],
            "currency": got["currency"],
            "payment_method": got["payment_method"],
            "trigger_event_id": got["trigger_event_id"],
            "balance_at_trigger": got["balance_at_trigger"],
            "reason": got.get("reason"),
            "funding_source": got.get("funding_source"),
            "partner_id": got.get("partner_id"),
        }
        wanted = {
            "kind": want.kind,
            "amount": want.amount,
            "currency": want.currency,
            "payment_method": want.payment_method,
            "trigger_event_id": want.trigger_event_id,
            "balance_at_trigger": want.balance_at_trigger,
            "reason": want.reason,
            "funding_source": want.funding_source,
            "partner_id": want.partner_id,
        }
        if fields != wanted:
            divergent += 1
            differ = {f: (fields[f], wanted[f]) for f in fields if fields[f] != wanted[f]}
            said.append(f"divergent {key[0]} {key[1]}: (published, expected) {differ}")
    return {"lost": lost, "doubled": doubled, "divergent": divergent}
