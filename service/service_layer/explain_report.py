"""What `auto-topup explain` shows of one customer, as plain data (the same for --json and
for people): the database's snapshot of the customer, and the domain's answers about it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from service.domain import rules
from service.domain.explain import (
    balance_at_or_below_threshold,
    customer_timezone,
    next_top_up,
    partner_failure,
)
from service.domain.model import PaymentMethod, Wallet, daily_key

RECENT_BUSINESS_DAYS = 7
DECISION_ROWS = 50

ORIGINS = {
    "finance_app": "the Finance app",
    "online_top_up": "the customer's own online top-up by card",
}

Report = dict[str, Any]
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What the database knows of one customer, read in one transaction."""

    wallet: Wallet | None  # None: no wallet row
    funded_customers: int  # wallets naming this one as their partner
    partner: Wallet | None  # the wallet of the partner the settings name, if stored
    keys: list[Row]  # daily keys from `since` on, newest first
    decisions: list[Row]  # decision summary, newest first
    today: date
    timezone: str
    open_invoices: list[Row] = field(default_factory=list)  # oldest first (max_open_invoices)


def short_id(stripe_id: str | None) -> str | None:
    """A Stripe id, shortened for display: enough to recognise it, not to use it."""
    if stripe_id is None or len(stripe_id) <= 8:
        return stripe_id
    return stripe_id[:8] + "…"


def _settings(wallet: Wallet, policy: rules.Policy) -> Report | None:
    s = wallet.settings
    if s is None:
        return None
    card = wallet.card
    return {
        "payment_method": s.payment_method.value,
        "auto_trigger": s.auto_trigger,
        "trigger_amount": s.trigger_amount,
        "limit_threshold": s.limit_threshold,
        "currency": s.currency,
        "timezone": s.timezone,
        "effective_timezone": customer_timezone(wallet, policy),
        "partner_id": s.partner_id,
        "card": None
        if card is None
        else {
            "stripe_customer_id": short_id(card.stripe_customer_id),
            "stripe_payment_method_id": short_id(card.stripe_payment_method_id),
        },
        "stripe_paused": wallet.stripe_paused,
        "origin": s.origin.value,
        "origin_label": ORIGINS.get(s.origin.value, s.origin.value),
        "occurred_at": s.occurred_at,
        "event_id": s.event_id,
        "version": s.version,
    }


def _balance(wallet: Wallet, now: datetime, policy: rules.Policy) -> Report | None:
    b = wallet.balance
    if b is None:
        return None
    return {
        "amount": b.amount,
        "currency": b.currency,
        "occurred_at": b.occurred_at,
        "sequence": b.sequence,
        "event_id": b.event_id,
        "at_or_below_threshold": balance_at_or_below_threshold(wallet, now, policy),
    }


def _as_partner(wallet: Wallet, funded_customers: int) -> Report | None:
    if funded_customers == 0 and not wallet.credits_out:
        return None
    issued = sum((c.amount for c in wallet.credits_out), Decimal(0))
    return {
        "funded_customers": funded_customers,
        "credit_issued_since_balance": issued,
        "credits_out": [{"issued_at": c.issued_at, "amount": c.amount} for c in wallet.credits_out],
        "available_funds": rules.available_funds(wallet),
        "currency": wallet.balance.currency if wallet.balance else None,
    }


def _funding_partner(wallet: Wallet, partner: Wallet | None, now: datetime) -> Report | None:
    s = wallet.settings
    if s is None or s.payment_method is not PaymentMethod.MASTER_ACCOUNT or s.partner_id is None:
        return None
    b = partner.balance if partner else None
    return {
        "partner_id": s.partner_id,
        "balance": b.amount if b else None,
        "currency": b.currency if b else None,
        "balance_occurred_at": b.occurred_at if b else None,
        "available_funds": rules.available_funds(partner) if partner else None,
        # What a top-up made now would come to: None (credit issued) or top-up-failed's reason.
        "failure_if_due_now": partner_failure(wallet, partner, now),
    }


def _key(row: Row) -> Report:
    return {
        "business_date": row["business_date"],
        "daily_key": daily_key(row["customer_id"], row["business_date"]),
        "payment_method": row["payment_method"],
        "amount": row["amount"],
        "currency": row["currency"],
        "phase": row["phase"],
        "result": row["result"],
        "reason": row["reason"],
        "detail": row["detail"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"],
        "stripe_payment_intent_id": row["stripe_payment_intent_id"],
        "trigger_event_id": row["trigger_event_id"],
        "balance_at_trigger": row["balance_at_trigger"],
        "limit_threshold": row["limit_threshold"],
        "created_at": row["created_at"],
    }


def _decision(row: Row) -> Report:
    return {
        "outcome": row["outcome"],
        "reason": row["reason"] or None,
        "last_at": row["last_at"],
        "times": row["times"],
        "method": row["method"],
        "business_date": row["business_date"],
        "last_event_id": row["last_event_id"],
        "source": f"{row['last_topic']}[{row['last_partition']}]@{row['last_offset']}",
        "topic": row["last_topic"],
        "partition": row["last_partition"],
        "offset": row["last_offset"],
        "detail": row["detail"] or None,
    }


def build_report(
    customer_id: str, snap: Snapshot, now: datetime, policy: rules.Policy
) -> Report | None:
    """Everything explain shows, as plain data; None for a customer the database never saw."""
    if snap.wallet is None and not snap.keys and not snap.decisions:
        return None
    taken = frozenset(k["business_date"] for k in snap.keys)
    wallet = snap.wallet or Wallet(customer_id)
    nxt = next_top_up(wallet, taken, now, policy)
    today_key = next((k for k in snap.keys if k["business_date"] == snap.today), None)
    return {
        "customer_id": customer_id,
        "now": now,
        "settings": _settings(wallet, policy),
        "balance": _balance(wallet, now, policy),
        "as_partner": _as_partner(wallet, snap.funded_customers),
        "funding_partner": _funding_partner(wallet, snap.partner, now),
        "today": {
            "business_date": snap.today,
            "timezone": snap.timezone,
            "timezone_is_default": wallet.settings is None or wallet.settings.timezone is None,
            "daily_key": daily_key(customer_id, snap.today),
            "key": None if today_key is None else _key(today_key),
        },
        "recent_daily_keys": [_key(k) for k in snap.keys],
        "next_top_up": {
            "code": nxt.code.value,
            "sentence": nxt.sentence,
            "not_before": nxt.not_before,
            "next_business_date": nxt.next_business_date,
            "business_date": nxt.business_date,
            "timezone": nxt.timezone,
        },
        "decisions": [_decision(d) for d in snap.decisions],
        "open_invoices": [_invoice(i) for i in snap.open_invoices],
    }


def _invoice(row: Row) -> Report:
    return {
        "invoice_request_id": row["invoice_request_id"],
        "business_date": row["business_date"],
        "amount": Decimal(row["amount"]),
        "currency": row["currency"],
        "requested_at": row["requested_at"],
        "status": row["status"],
        "overdue_noticed_at": row["overdue_noticed_at"],
    }


def _jsonable(v: object) -> str:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def to_json(report: Report) -> str:
    return json.dumps(report, default=_jsonable, ensure_ascii=False, indent=2)
