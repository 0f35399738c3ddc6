"""The card-payment port: what the charger needs from a payment provider. (A provider's
answer, `ChargeResult`, is the domain's: the Stripe rail decides what it comes to.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from service.domain.rails import ChargeResult, ChargeStatus
from service.domain.rails.stripe import pauses_card
from service.domain.reasons import TEMPORARY_DECLINES

__all__ = [
    "TEMPORARY_DECLINES",
    "ChargeRequest",
    "ChargeResult",
    "ChargeStatus",
    "PaymentGateway",
    "TransientChargeError",
    "adopt",
    "pauses_card",
]


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    idempotency_key: str  # derived from the daily key: every retry sends the same one
    amount_minor: int
    currency: str
    customer: str
    payment_method: str
    metadata: dict[str, str] = field(default_factory=dict)


class TransientChargeError(Exception):
    """The outcome is unknown or the provider is away: retry with the same idempotency key.
    Raised by `find` too: the lookup could not be made (which proves nothing either way)."""


def adopt(found: Sequence[ChargeResult]) -> ChargeResult | None:
    """What the PaymentIntents found for one daily key come to: a succeeded one wins (money
    moved), else one still processing (wait for it), else a failed one; None when none."""
    for status in (ChargeStatus.SUCCEEDED, ChargeStatus.PENDING, ChargeStatus.FAILED):
        for result in found:
            if result.status is status:
                return result
    return None


class PaymentGateway(Protocol):
    async def charge(self, request: ChargeRequest) -> ChargeResult: ...

    async def retrieve(self, payment_intent_id: str) -> ChargeResult: ...

    async def find(self, daily_key: str) -> list[ChargeResult]:
        """Every PaymentIntent whose metadata.daily_key is `daily_key` (Stripe's Search API:
        eventually consistent, an empty answer right after a request is no proof)."""
        ...
