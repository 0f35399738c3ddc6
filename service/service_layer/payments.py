"""The card-payment port: what the charger needs from a payment provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a hard failure: declined, authentication required, card unusable
    PENDING = "pending"  # accepted but not final yet: look again later


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    idempotency_key: str  # derived from the daily key: every retry sends the same one
    amount_minor: int
    currency: str
    customer: str
    payment_method: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChargeResult:
    status: ChargeStatus
    payment_intent_id: str | None = None
    reason: str | None = None  # stable snake_case code on failure
    detail: str = ""
    # The card itself failed (declined, needs authentication, gone): Stripe top-ups pause
    # until the customer saves new card details. Other failures do not pause.
    card_unusable: bool = False


class TransientChargeError(Exception):
    """The outcome is unknown or the provider is away: retry with the same idempotency key."""


class PaymentGateway(Protocol):
    async def charge(self, request: ChargeRequest) -> ChargeResult: ...

    async def retrieve(self, payment_intent_id: str) -> ChargeResult: ...
