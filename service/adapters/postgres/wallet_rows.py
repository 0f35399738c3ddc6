"""A wallet as a row, by column name: read from `lock_wallets` (and `read_wallets`,
`explain_wallet`), written as a `wallet_state` value (`save_wallets`).

Both directions use the column names only, never positions: `wallet_to_state()` returns a
mapping that the driver places by the composite type's attribute names, so a new attribute or
a new order in the type cannot shift a value into the wrong column.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from service.domain.model import (
    FIXED_AMOUNTS,
    AmountMode,
    Amounts,
    Balance,
    Card,
    CardTerms,
    Credit,
    MonthSpend,
    Origin,
    PaymentMethod,
    Settings,
    Wallet,
)
from service.domain.usage import Usage
from service.domain.usage_codec import pack, unpack


class Row(Protocol):
    """A result row read by column name (an asyncpg Record)."""

    def __getitem__(self, key: str, /) -> Any: ...


def _newest(at: datetime | None, event_id: str) -> tuple[datetime, str] | None:
    return None if at is None else (at, event_id)


def _money(value: Decimal | str) -> Decimal:
    """numeric columns: the lock query sends them as text (decoded faster, exactly)."""
    return value if isinstance(value, Decimal) else Decimal(value)


def card_from_row(row: Row) -> Card | None:
    """The saved card of a wallet or a daily key row (same column names)."""
    if row["stripe_customer_id"] is None:
        return None
    return Card(row["stripe_customer_id"], row["stripe_payment_method_id"])


def _credits(raw: str) -> tuple[Credit, ...]:
    if raw == "[]":  # nearly every wallet: not a partner, or nothing outstanding
        return ()
    return tuple(
        Credit(datetime.fromisoformat(c["at"]), Decimal(c["amount"]), c.get("id"))
        for c in json.loads(raw)
    )


def _credits_json(credits: tuple[Credit, ...]) -> str:
    return json.dumps(
        [
            {"at": c.issued_at.isoformat(), "amount": str(c.amount), "id": c.event_id}
            for c in credits
        ]
    )


def _card_terms(raw: str | None) -> CardTerms | None:
    if raw is None:
        return None
    t = json.loads(raw)
    newest = (datetime.fromisoformat(t["at"]), t["event_id"]) if t.get("at") else None
    return CardTerms(
        Decimal(t["trigger_amount"]),
        Decimal(t["limit_threshold"]),
        t["currency"],
        newest,
        _amounts(t),
    )


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _amounts(v: dict[str, Any]) -> Amounts:
    """The v2 amount settings of a settings_v2 or card_terms object (absent: v1's)."""
    if v.get("amount_mode") is None and v.get("max_amount") is None and not v.get("monthly_cap"):
        return FIXED_AMOUNTS
    return Amounts(
        AmountMode(v.get("amount_mode") or "fixed"),
        _decimal(v.get("target_balance")),
        _decimal(v.get("max_amount")),
        _decimal(v.get("monthly_cap")),
    )


def _amounts_json(a: Amounts) -> dict[str, Any]:
    if a == FIXED_AMOUNTS:
        return {}
    return {
        "amount_mode": a.mode.value,
        "target_balance": None if a.target_balance is None else str(a.target_balance),
        "max_amount": None if a.max_amount is None else str(a.max_amount),
        "monthly_cap": None if a.monthly_cap is None else str(a.monthly_cap),
    }


def _settings_v2_json(s: Settings | None) -> str | None:
    if s is None:
        return None
    body = _amounts_json(s.amounts)
    if s.fallback_method is not None:
        body["fallback_method"] = s.fallback_method.value
    if s.max_open_invoices is not None:
        body["max_open_invoices"] = s.max_open_invoices
    return json.dumps(body) if body else None


def _month(raw: str | None) -> MonthSpend | None:
    return None if raw is None else _month_of(json.loads(raw))


def _month_of(m: dict[str, Any]) -> MonthSpend:
    # {"month", "spent", "notices", "earlier": the month before's, or absent (before 0.13.1)}
    earlier = m.get("earlier")
    return MonthSpend(
        m["month"],
        Decimal(m["spent"]),
        frozenset(m.get("notices", ())),
        _month_of(earlier) if earlier is not None else None,
    )


def _month_body(m: MonthSpend) -> dict[str, Any]:
    body: dict[str, Any] = {"month": m.month, "spent": str(m.spent), "notices": sorted(m.notices)}
    if m.earlier is not None:
        body["earlier"] = _month_body(m.earlier)
    return body


def _month_json(m: MonthSpend | None) -> str | None:
    return None if m is None else json.dumps(_month_body(m))


def _card_terms_json(terms: CardTerms | None) -> str | None:
    if terms is None:
        return None
    return json.dumps(
        {
            "trigger_amount": str(terms.trigger_amount),
            "limit_threshold": str(terms.limit_threshold),
            "currency": terms.currency,
            "at": terms.newest[0].isoformat() if terms.newest else None,
            "event_id": terms.newest[1] if terms.newest else None,
            **_amounts_json(terms.amounts),
        }
    )


# The enums by value: a dict lookup, where calling the enum costs a microsecond per row.
_METHODS = {m.value: m for m in PaymentMethod}
_ORIGINS = {o.value: o for o in Origin}


def _settings_from_row(row: Row) -> Settings | None:
    if row["payment_method"] is None:
        return None
    raw = row["settings_v2"]
    v2: dict[str, Any] = json.loads(raw) if raw is not None else {}
    fallback = v2.get("fallback_method")
    return Settings(
        payment_method=_METHODS[row["payment_method"]],
        auto_trigger=row["auto_trigger"],
        trigger_amount=_money(row["trigger_amount"]),
        limit_threshold=_money(row["limit_threshold"]),
        currency=row["settings_currency"],
        timezone=row["timezone"],
        partner_id=row["partner_id"],
        origin=_ORIGINS[row["settings_origin"]],
        version=row["settings_version"],
        occurred_at=row["settings_occurred_at"],
        event_id=row["settings_event_id"],
        newest=_newest(row["settings_newest_at"], row["settings_newest_id"]),
        amounts=_amounts(v2) if v2 else FIXED_AMOUNTS,
        fallback_method=PaymentMethod(fallback) if fallback else None,
        max_open_invoices=v2.get("max_open_invoices"),
    )


def _balance_from_row(row: Row) -> Balance | None:
    if row["balance"] is None:
        return None
    return Balance(
        _money(row["balance"]),
        row["balance_currency"],
        row["balance_occurred_at"],
        row["balance_sequence"],
        row["balance_event_id"],
        _newest(row["balance_newest_at"], row["balance_newest_id"]),
    )


def wallet_from_row(row: Row, attempt_dates: frozenset[date]) -> Wallet:
    return Wallet(
        row["customer_id"],
        _settings_from_row(row),
        card_from_row(row),
        row["stripe_paused"],
        _balance_from_row(row),
        _credits(row["credits_out"]),
        attempt_dates,
        _card_terms(row["card_terms"]),
        row["attempt_day_end"],
        _month(row["month_spend"]),
        (),
        row["advised_on"],
        usage_of(row["usage"]),
    )


def usage_of(raw: bytes | None) -> Usage | None:
    return None if raw is None else unpack(raw)


def usage_bytes(usage: Usage | None) -> bytes | None:
    return None if usage is None else pack(usage)


def _settings_state(s: Settings | None) -> dict[str, Any]:
    newest = s.newest if s else None
    return {
        "payment_method": s.payment_method.value if s else None,
        "auto_trigger": s.auto_trigger if s else None,
        "trigger_amount": s.trigger_amount if s else None,
        "limit_threshold": s.limit_threshold if s else None,
        "settings_currency": s.currency if s else None,
        "timezone": s.timezone if s else None,
        "partner_id": s.partner_id if s else None,
        "settings_origin": s.origin.value if s else None,
        "settings_version": s.version if s else None,
        "settings_occurred_at": s.occurred_at if s else None,
        "settings_event_id": s.event_id if s else None,
        "settings_newest_at": newest[0] if newest else None,
        "settings_newest_id": newest[1] if newest else None,
    }


def _balance_state(b: Balance | None) -> dict[str, Any]:
    newest = b.newest if b else None
    return {
        "balance": b.amount if b else None,
        "balance_currency": b.currency if b else None,
        "balance_occurred_at": b.occurred_at if b else None,
        "balance_sequence": b.sequence if b else None,
        "balance_event_id": b.event_id if b else None,
        "balance_newest_at": newest[0] if newest else None,
        "balance_newest_id": newest[1] if newest else None,
    }


def wallet_to_state(w: Wallet) -> dict[str, Any]:
    """The wallet as a `wallet_state` value, by attribute name (every attribute, always)."""
    c = w.card
    return {
        "customer_id": w.customer_id,
        **_settings_state(w.settings),
        "stripe_customer_id": c.stripe_customer_id if c else None,
        "stripe_payment_method_id": c.stripe_payment_method_id if c else None,
        "stripe_paused": w.stripe_paused,
        **_balance_state(w.balance),
        "credits_out": _credits_json(w.credits_out),
        "card_terms": _card_terms_json(w.card_terms),
        "attempt_day_end": w.attempt_day_end,
        "settings_v2": _settings_v2_json(w.settings),
        "month_spend": _month_json(w.month),
        "advised_on": w.advised_on,
        "usage": usage_bytes(w.usage),
    }
