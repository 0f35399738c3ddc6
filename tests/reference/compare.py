"""The chaos run's verdict: what the service published against what the contract decides."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from tests.reference.contract import Reference


def compare(
    expected: Reference, published: list[dict[str, Any]], kinds: list[str]
) -> dict[str, int]:
    """lost, doubled and divergent decisions, from what was published (event, kind) pairs."""
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
    return {"lost": lost, "doubled": doubled, "divergent": divergent}
