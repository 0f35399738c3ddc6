"""Pydantic models of every event in the contract (v2)."""

from __future__ import annotations

from datetime import date
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from service.contract.types import (
    Count,
    Currency,
    EventId,
    Flag,
    Id,
    Money,
    OutAmount,
    OutTimestamp,
    PositiveMoney,
    Timestamp,
    Timezone,
)

PaymentMethodName = Literal["cheque_tt", "stripe", "master_account"]
OriginName = Literal["finance_app", "online_top_up"]


class _Input(BaseModel):
    # Unknown extra fields are ignored (forward compatibility).
    model_config = ConfigDict(extra="ignore", frozen=True)


class WalletBalanceChanged(_Input):
    """A wallet's new balance (customers' and partners' wallets alike)."""

    model_config = ConfigDict(title="wallet-balance-changed")

    event_id: EventId
    occurred_at: Timestamp
    customer_id: Id
    currency: Currency
    balance: Money = Field(description="the balance after the change; may be negative")
    sequence: Count | None = Field(
        default=None, description="increases with every change of this wallet"
    )
    caused_by: EventId | None = Field(
        default=None,
        description="since v2: the event_id of the output event (e.g. a credit-issued) whose "
        "application made this change, when one did",
    )


_SETTINGS_RULES: JsonDict = {
    "allOf": [
        {
            "if": {
                "properties": {"payment_method": {"const": "master_account"}},
                "required": ["payment_method"],
            },
            "then": {"required": ["partner_id"], "properties": {"partner_id": {"type": "string"}}},
        },
        {
            "if": {"properties": {"origin": {"const": "online_top_up"}}, "required": ["origin"]},
            "then": {
                "required": ["stripe_customer_id", "stripe_payment_method_id"],
                "properties": {
                    "payment_method": {"const": "stripe"},
                    "stripe_customer_id": {"type": "string"},
                    "stripe_payment_method_id": {"type": "string"},
                },
            },
        },
    ]
}


class SettingsUpdated(_Input):
    """A customer's payment settings, whole (a snapshot, not a patch)."""

    model_config = ConfigDict(title="settings-updated", json_schema_extra=_SETTINGS_RULES)

    event_id: EventId
    occurred_at: Timestamp
    customer_id: Id
    origin: OriginName
    payment_method: PaymentMethodName
    auto_trigger: Flag
    trigger_amount: PositiveMoney
    limit_threshold: Money
    currency: Currency
    timezone: Timezone | None = Field(default=None, description="IANA name")
    partner_id: Id | None = None
    stripe_customer_id: Id | None = None
    stripe_payment_method_id: Id | None = None
    version: Count | None = None

    @model_validator(mode="after")
    def _conditional_fields(self) -> Self:
        if self.payment_method == "master_account" and self.partner_id is None:
            raise ValueError("partner_id is required when payment_method is master_account")
        if self.origin == "online_top_up":
            if self.payment_method != "stripe":
                raise ValueError("an online top-up saves a card: payment_method must be stripe")
            if self.stripe_customer_id is None or self.stripe_payment_method_id is None:
                raise ValueError(
                    "stripe_customer_id and stripe_payment_method_id are required "
                    "when origin is online_top_up"
                )
        return self


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(description="UUIDv5 of the daily key and the event type")
    customer_id: Id
    business_date: date
    idempotency_key: str = Field(description="the daily key: customer_id/business_date")
    trigger_event_id: EventId
    balance_at_trigger: OutAmount
    limit_threshold: OutAmount
    amount: OutAmount
    currency: Currency
    payment_method: PaymentMethodName
    emitted_at: OutTimestamp


class InvoiceRequested(_Output):
    """Send this customer a top-up invoice (Cheque / Telegraphic Transfer)."""

    model_config = ConfigDict(title="invoice-requested")


class CreditIssued(_Output):
    """Credit was issued to this customer's wallet."""

    model_config = ConfigDict(title="credit-issued")

    funding_source: Literal["master_account", "stripe"]
    partner_id: Id | None = None
    stripe_payment_intent_id: str | None = None


class TopUpFailed(_Output):
    """A top-up was due but could not be done."""

    model_config = ConfigDict(title="top-up-failed")

    reason: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="stable snake_case code")
    detail: str


OutputEvent = InvoiceRequested | CreditIssued | TopUpFailed
