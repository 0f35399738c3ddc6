"""An independent model of the contract, in plain Python, to check the service against.

It knows nothing of the service's code: it reads the scenario's messages in the order each
partition delivers them (phases in order; inside a phase, each customer's own order) and says
which decision each daily key must come to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tests.chaos.scenario import BALANCE, Msg, Scenario

SCALES = {"JPY": 0, "KWD": 3}


@dataclass(frozen=True)
class Expected:
    kind: str  # invoice-requested | credit-issued | top-up-failed
    customer_id: str
    business_date: date
    amount: str
    currency: str
    payment_method: str
    trigger_event_id: str
    balance_at_trigger: str
    reason: str | None = None
    funding_source: str | None = None
    partner_id: str | None = None


def _fmt(value: Decimal, currency: str) -> str:
    out = value.quantize(Decimal(1).scaleb(-SCALES.get(currency, 2)))
    return f"{abs(out) if out == 0 else out:f}"


class Reference:
    def __init__(self, scenario: Scenario, declined_cards: set[str], today_utc: datetime) -> None:
        self.now = today_utc
        self.declined = declined_cards
        self.settings: dict[str, dict[str, Any]] = {}
        self.balance: dict[str, dict[str, Any]] = {}
        self.days: dict[tuple[str, date], Expected] = {}
        self.dead: list[Msg] = []
        for phase in scenario.phases:
            for msg in phase:
                self._apply(msg)

    def _apply(self, msg: Msg) -> None:
        if msg.dead_reason is not None:
            self.dead.append(msg)
            return
        body = json.loads(msg.value, parse_float=Decimal)
        if msg.topic == BALANCE:
            self._balance(body)
        else:
            self._settings(body)

    def _balance(self, body: dict[str, Any]) -> None:
        who = body["customer_id"]
        last = self.balance.get(who)
        if last is not None and (
            body["event_id"] == last["event_id"] or body["sequence"] <= last["sequence"]
        ):
            return  # stale or repeated
        self.balance[who] = body
        self._due(who, body["event_id"], body["occurred_at"])

    def _settings(self, body: dict[str, Any]) -> None:
        who = body["customer_id"]
        old = self.settings.get(who)
        if old is not None and body["version"] <= old["version"]:
            return
        self.settings[who] = body
        on = body["auto_trigger"] and (old is None or not old["auto_trigger"])
        raised = old is not None and Decimal(body["limit_threshold"]) > Decimal(
            old["limit_threshold"]
        )
        if on or raised:
            self._due(who, body["event_id"], body["occurred_at"])

    def _due(self, who: str, trigger: str, occurred_at: str) -> None:
        s, b = self.settings.get(who), self.balance.get(who)
        if s is None or b is None or not s["auto_trigger"]:
            return
        if Decimal(b["balance"]) > Decimal(s["limit_threshold"]):
            return
        zone = ZoneInfo(s.get("timezone") or "UTC")
        day = datetime.fromisoformat(occurred_at).astimezone(zone).date()
        if day < self.now.astimezone(zone).date() - timedelta(days=1):
            return
        if (who, day) in self.days:
            return
        currency, method = s["currency"], s["payment_method"]
        common = {
            "customer_id": who,
            "business_date": day,
            "currency": currency,
            "amount": _fmt(Decimal(s["trigger_amount"]), currency),
            "payment_method": method,
            "trigger_event_id": trigger,
            "balance_at_trigger": _fmt(Decimal(b["balance"]), currency),
        }
        if method == "cheque_tt":
            self.days[(who, day)] = Expected("invoice-requested", **common)
        elif method == "master_account":
            partner = s["partner_id"]
            if partner not in self.balance:
                self.days[(who, day)] = Expected(
                    "top-up-failed", reason="partner_balance_unknown", **common
                )
            else:  # the scenario's partners never run short
                self.days[(who, day)] = Expected(
                    "credit-issued", funding_source="master_account", partner_id=partner, **common
                )
        elif s["stripe_payment_method_id"] in self.declined:
            self.days[(who, day)] = Expected("top-up-failed", reason="card_declined", **common)
        else:
            self.days[(who, day)] = Expected("credit-issued", funding_source="stripe", **common)


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
