"""The card-payment port: what the charger needs from a payment provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a hard failure: declined, authentication required, card unusable
    PENDING = "pending"  # accepted but not final yet: look again later


# Declines that Stripe documents as temporary ("the customer should try again"): the card is
# fine, so they never pause Stripe top-ups, whatever else the result says.
TEMPORARY_DECLINES: Final = frozenset(
    {"try_again_later", "processing_error", "issuer_not_available", "reenter_transaction"}
)


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

    @property
    def pauses_card(self) -> bool:
        """Whether this result pauses Stripe top-ups: a hard failure of the card itself, never
        a decline documented as temporary."""
        return (
            self.status is ChargeStatus.FAILED
            and self.card_unusable
            and self.reason not in TEMPORARY_DECLINES
        )


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
