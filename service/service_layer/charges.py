"""A Stripe charge's row (a claimed daily key), the store that moves it through its phases,
and what a final charge result comes to (the charger and an operator settle it the same way)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.config import Topics
from service.domain.model import TopUp
from service.domain.rails import DEFAULT_RAILS, ChargeResult, Rails
from service.service_layer.ports import OutboxRecord
from service.service_layer.settlement import settled_record


@dataclass(frozen=True, slots=True)
class PendingCharge:
    topup: TopUp
    attempts: int  # including the one in progress
    payment_intent_id: str | None
    claimed_at: datetime
    trace_headers: tuple[tuple[str, str], ...] = ()
    # When the first attempt was leased (the Stripe key's age counts from it); set by lease().
    first_attempt_at: datetime | None = None

    @property
    def started_at(self) -> datetime:
        return self.first_attempt_at or self.claimed_at


class ChargeStore(Protocol):
    async def lease(self, limit: int, lease_seconds: float, now: datetime) -> list[PendingCharge]:
        """Takes the due charges ('charging', one more attempt); `now` becomes the first
        attempt's time of a charge never attempted before."""
        ...

    async def finish(self, charge: PendingCharge, outcome: ChargeOutcome) -> bool:
        """Records the result and its output event in one transaction (and pauses the card
        if the outcome says so); False if another worker settled it first."""
        ...

    async def postpone(
        self,
        charge: PendingCharge,
        until: datetime,
        detail: str,
        payment_intent_id: str | None,
        looked_up_at: datetime | None = None,
    ) -> None: ...

    async def review(
        self, charge: PendingCharge, detail: str, looked_up_at: datetime | None
    ) -> bool:
        """Moves a charge still 'charging' to 'needs_review' (no more attempts); False if
        another worker settled it first."""
        ...


def stripe_idempotency_key(topup: TopUp) -> str:
    """The same for every attempt of one daily key, and for no other."""
    return f"auto-topup:{topup.idempotency_key}"


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """What a settled charge comes to: the daily key's result and the event to publish, and
    the card to pause (a hard failure of the card itself)."""

    result: str  # credit_issued | failed
    reason: str | None
    detail: str
    record: OutboxRecord
    payment_intent_id: str | None = None
    pause_card: str | None = None


def charge_outcome(
    topics: Topics,
    charge: PendingCharge,
    result: ChargeResult,
    now: datetime,
    rails: Rails = DEFAULT_RAILS,
) -> ChargeOutcome:
    """A final result (succeeded or failed) as its rail decides it, with the output event under
    the daily key's deterministic event id: the same whoever settles it (the charger, or an
    operator)."""
    topup = charge.topup
    settled = rails[topup.payment_method].charged(topup, result)
    record = settled_record(topics, topup, settled, now, charge.trace_headers)
    return ChargeOutcome(
        settled.result,
        settled.reason,
        settled.detail,
        record,
        result.payment_intent_id,
        settled.pause_card,
    )
