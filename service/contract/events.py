"""Pydantic models of every event in the contract (v2)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from pydantic.config import JsonDict

from service.contract.types import (
    MAX_COUNT,
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
FallbackMethodName = Literal["cheque_tt", "master_account"]
OriginName = Literal["finance_app", "online_top_up"]
AmountModeName = Literal["fixed", "to_target", "cover_gap"]
InvoiceStatusName = Literal["issued", "paid", "void"]
NoticeTypeName = Literal[
    "monthly_cap_warning",
    "monthly_cap_reached",
    "stripe_paused",
    "invoice_overdue",
    "trigger_amount_too_low",
]


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
        {
            "if": {
                "properties": {"amount_mode": {"const": "to_target"}},
                "required": ["amount_mode"],
            },
            "then": {
                "required": ["target_balance"],
                "properties": {"target_balance": {"type": "string"}},
            },
        },
        {
            "if": {
                "properties": {"fallback_method": {"const": "master_account"}},
                "required": ["fallback_method"],
            },
            "then": {"required": ["partner_id"], "properties": {"partner_id": {"type": "string"}}},
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
    amount_mode: AmountModeName = Field(
        default="fixed", description="since v2: how much one top-up is"
    )
    target_balance: Money | None = Field(
        default=None,
        description="since v2, required with to_target: the balance a top-up brings the wallet "
        "to; above limit_threshold",
    )
    max_amount: PositiveMoney | None = Field(
        default=None, description="since v2: no single top-up is larger"
    )
    monthly_cap: PositiveMoney | None = Field(
        default=None,
        description="since v2: top-ups in one calendar month of the customer's timezone add "
        "up to at most this",
    )
    fallback_method: FallbackMethodName | None = Field(
        default=None,
        description="since v2: used in the same attempt when the payment method fails; not the "
        "same as payment_method",
    )
    max_open_invoices: Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)] | None = Field(
        default=None,
        description="since v2: Cheque / TT: no new invoice while this many requested invoices "
        "are neither paid nor void",
    )

    @model_validator(mode="after")
    def _conditional_fields(self) -> Self:
        if self.payment_method == "master_account" and self.partner_id is None:
            raise ValueError("partner_id is required when payment_method is master_account")
        self._v2_fields()
        if self.origin == "online_top_up":
            if self.payment_method != "stripe":
                raise ValueError("an online top-up saves a card: payment_method must be stripe")
            if self.stripe_customer_id is None or self.stripe_payment_method_id is None:
                raise ValueError(
                    "stripe_customer_id and stripe_payment_method_id are required "
                    "when origin is online_top_up"
                )
        return self

    def _v2_fields(self) -> None:
        if self.amount_mode == "to_target":
            if self.target_balance is None:
                raise ValueError("target_balance is required when amount_mode is to_target")
            if self.target_balance <= self.limit_threshold:
                raise ValueError("target_balance must be above limit_threshold")
        if self.fallback_method is not None:
            if self.fallback_method == self.payment_method:
                raise ValueError("fallback_method must not be the same as payment_method")
            if self.fallback_method == "master_account" and self.partner_id is None:
                raise ValueError("partner_id is required when fallback_method is master_account")


class InvoiceStatusChanged(_Input):
    """Since v2: what became of an invoice that this service requested (published by
    downstream invoicing)."""

    model_config = ConfigDict(title="invoice-status-changed")

    event_id: EventId
    occurred_at: Timestamp
    customer_id: Id
    invoice_request_id: EventId = Field(description="the event_id of the invoice-requested event")
    status: InvoiceStatusName = Field(description="paid and void close the invoice")


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
    amount_mode: AmountModeName | None = Field(
        default=None, description="since v2: how the amount was reckoned"
    )
    fallback_from: PaymentMethodName | None = Field(
        default=None,
        description="since v2, on a fallback step: the payment method that failed before it in "
        "the same attempt",
    )


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


class AutoTopupNotice(BaseModel):
    """Since v2: something a person should hear about (for a notification service). One event
    per (customer_id, type, period)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="auto-topup-notice")

    event_id: str = Field(description="UUIDv5 of customer_id, type and period")
    customer_id: Id
    type: NoticeTypeName
    period: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$", description="a date or YYYY-MM")
    emitted_at: OutTimestamp
    currency: Currency | None = None
    # monthly_cap_warning, monthly_cap_reached
    monthly_cap: OutAmount | None = None
    month_total: OutAmount | None = Field(
        default=None, description="top-ups of the month so far (cap notices)"
    )
    # stripe_paused
    reason: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]*$", description="stripe_paused: Stripe's reason"
    )
    # invoice_overdue
    invoice_request_id: str | None = None
    amount: OutAmount | None = None
    open_days: int | None = Field(default=None, ge=0, description="invoice_overdue")
    # trigger_amount_too_low
    trigger_amount: OutAmount | None = None
    observed_daily_usage: OutAmount | None = None
    recommended_trigger_amount: OutAmount | None = None


OutputEvent = InvoiceRequested | CreditIssued | TopUpFailed | AutoTopupNotice
