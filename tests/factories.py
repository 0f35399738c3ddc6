"""Builders of contract events (wire dicts) and domain events for tests."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from service.domain.model import (
    BalanceChanged,
    Card,
    CardTerms,
    Credit,
    Origin,
    PaymentMethod,
    SettingsUpdated,
    Wallet,
)
from service.domain.rules import Policy, apply_balance, apply_settings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


def eid() -> str:
    return str(uuid.uuid4())


def _tick() -> datetime:
    """NOW, a microsecond later on every call: events built one after the other are newer."""
    return NOW + timedelta(microseconds=next(_seq))


def balance(
    customer_id: str = "cust-1",
    amount: str = "5.00",
    *,
    at: datetime | None = None,
    currency: str = "USD",
    sequence: int | None = None,
    event_id: str | None = None,
    caused_by: str | None = None,
) -> BalanceChanged:
    return BalanceChanged(
        event_id or eid(),
        at or _tick(),
        customer_id,
        currency,
        Decimal(amount),
        sequence,
        caused_by,
    )


def settings(
    customer_id: str = "cust-1",
    *,
    method: PaymentMethod = PaymentMethod.CHEQUE_TT,
    trigger: str = "100.00",
    threshold: str = "10.00",
    auto: bool = True,
    currency: str = "USD",
    at: datetime | None = None,
    origin: Origin = Origin.FINANCE_APP,
    timezone: str | None = None,
    partner_id: str | None = None,
    card: tuple[str, str] | None = None,
    version: int | None = None,
    event_id: str | None = None,
) -> SettingsUpdated:
    return SettingsUpdated(
        event_id=event_id or eid(),
        occurred_at=at or _tick(),
        customer_id=customer_id,
        origin=origin,
        payment_method=method,
        auto_trigger=auto,
        trigger_amount=Decimal(trigger),
        limit_threshold=Decimal(threshold),
        currency=currency,
        timezone=timezone,
        partner_id=partner_id,
        stripe_customer_id=card[0] if card else None,
        stripe_payment_method_id=card[1] if card else None,
        version=version,
    )


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def balance_wire(
    customer_id: str,
    balance: str,
    *,
    at: datetime | None = None,
    currency: str = "USD",
    sequence: int | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or eid(),
        "occurred_at": iso(at or datetime.now(UTC)),
        "customer_id": customer_id,
        "currency": currency,
        "balance": balance,
    }
    if sequence is not None:
        body["sequence"] = sequence
    body.update(extra)
    return body


def settings_wire(
    customer_id: str,
    *,
    method: str = "cheque_tt",
    trigger: str = "100.00",
    threshold: str = "10.00",
    auto: object = True,
    currency: str = "USD",
    origin: str = "finance_app",
    at: datetime | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or eid(),
        "occurred_at": iso(at or datetime.now(UTC)),
        "customer_id": customer_id,
        "origin": origin,
        "payment_method": method,
        "auto_trigger": auto,
        "trigger_amount": trigger,
        "limit_threshold": threshold,
        "currency": currency,
    }
    body.update(extra)
    return body


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode("utf-8")


def full_wallet(customer_id: str = "cust-1") -> Wallet:
    """A wallet with every field set (settings, card, balance, credits, card terms, the last
    attempt's day end): what a round trip through storage must keep whole."""
    wallet = apply_settings(
        Wallet(customer_id),
        settings(customer_id, timezone="Asia/Kolkata", version=7),
        NOW,
        Policy(),
    ).wallet
    wallet = apply_balance(
        wallet, balance(customer_id, amount="-12.3456", sequence=9), NOW, Policy()
    ).wallet
    return replace(
        wallet,
        card=Card("cus_1", "pm_1"),
        stripe_paused=True,
        credits_out=(Credit(NOW, Decimal("25.50")), Credit(NOW, Decimal("1.25"), "credit-9")),
        attempt_dates=frozenset(),
        card_terms=CardTerms(Decimal("50.00"), Decimal("-10.5"), "USD"),
        attempt_day_end=NOW + timedelta(hours=3),
    )
