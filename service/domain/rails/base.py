"""A payment rail: what a due top-up does for one way of paying, and what a charge made
outside this service's transaction comes to. Pure: a rail decides, the handler and the charger
persist and publish what it decided.

A top-up moves through one rail in one of two ways:
- at once, in the transaction that decided it (`settle` returns `Settled`): an invoice is
  requested, a partner's wallet funds a credit, or the top-up fails;
- in phases (`settle` returns `ChargeLater`): the daily key is claimed, and a charger makes the
  outside call later and asks `charged` what the provider's answer comes to (Stripe).
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from service.domain.model import (
    FIXED_AMOUNTS,
    Amounts,
    PaymentMethod,
    SettingsUpdated,
    TopUp,
    Wallet,
)
from service.domain.reasons import BlockReason
from service.domain.values import value


class Output(StrEnum):
    """The output event a settled top-up publishes (its topic's event name in the contract)."""

    INVOICE_REQUESTED = "invoice-requested"
    CREDIT_ISSUED = "credit-issued"
    TOP_UP_FAILED = "top-up-failed"


class FundingSource(StrEnum):
    """Where the money of a credit-issued came from (`funding_source` in the contract)."""

    MASTER_ACCOUNT = "master_account"
    STRIPE = "stripe"


# The daily key's result for each output (the `result` column of daily_keys).
_RESULTS = {
    Output.INVOICE_REQUESTED: "invoice_requested",
    Output.CREDIT_ISSUED: "credit_issued",
    Output.TOP_UP_FAILED: "failed",
}


@value
class Terms:
    """What a due top-up of this wallet uses: below `threshold`, `amount` in `currency`."""

    threshold: Decimal
    amount: Decimal  # the Trigger Amount
    currency: str
    amounts: Amounts = FIXED_AMOUNTS  # how much one top-up is, and its caps (contract v2)
    # The amount must be one a card can be charged (Stripe's minimum, the card's scale).
    card: bool = False


@value
class Due:
    """A top-up the rules found due, and what a rail may need to settle it."""

    topup: TopUp
    now: datetime
    # The partner's wallet as this batch knows it (None: no partner, or none known).
    payer: Wallet | None
    # The id of the credit-issued event this top-up would publish (a partner's reservation is
    # released by the balance event that names it in `caused_by`).
    credit_event_id: str
    credit_hold: timedelta
    # The customer's wallet (a fallback goes on at once when the first method is paused).
    wallet: Wallet | None = None
    # The id of the credit-issued event a fallback step to a master account would publish.
    fallback_credit_event_id: str = ""


@value
class Settled:
    """The top-up's daily key is done; publish `output`."""

    output: Output
    reason: str | None = None  # why it failed (top-up-failed's reason)
    detail: str = ""
    funding_source: FundingSource | None = None  # with a credit-issued
    payment_intent_id: str | None = None  # with a credit-issued funded by a card
    # Wallets the rail changed (a partner's wallet with the new credit reserved).
    changed: tuple[Wallet, ...] = field(default=())
    # The card whose top-ups pause until its owner saves new details (a hard card failure).
    pause_card: str | None = None
    # The top-up as settled when a fallback step settled it (its method, `fallback_from`).
    topup: TopUp | None = None

    @property
    def result(self) -> str:
        return _RESULTS[self.output]


@value
class ChargeLater:
    """Claim the daily key now; a charger makes the outside call in phases."""


Step = Settled | ChargeLater


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a hard failure: declined, authentication required, card unusable
    PENDING = "pending"  # accepted but not final yet: look again later


@value
class ChargeResult:
    """A payment provider's answer to a charge."""

    status: ChargeStatus
    payment_intent_id: str | None = None
    reason: str | None = None  # stable snake_case code on failure
    detail: str = ""
    # The card itself failed (declined, needs authentication, gone). Whether that pauses
    # top-ups is the rail's decision (a decline documented as temporary does not).
    card_unusable: bool = False


class Rail(Protocol):
    """One way of paying. Register a new one in `service.domain.rails.registry`."""

    @property
    def method(self) -> PaymentMethod: ...

    def settings_error(self, wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
        """Why settings choosing this rail cannot be applied (reason, detail), or None."""
        ...

    def terms(self, wallet: Wallet) -> Terms | str:
        """The amounts a due top-up uses, or the reason none can be made (blocked)."""
        ...

    def paused(self, wallet: Wallet) -> str | None:
        """The reason top-ups through this rail are paused for this wallet, or None."""
        ...

    def settle(self, due: Due) -> Step:
        """What a due top-up does."""
        ...

    def charged(self, topup: TopUp, result: ChargeResult) -> Settled:
        """What a final charge result (succeeded or failed) comes to, for a rail whose `settle`
        returns ChargeLater."""
        ...


def settings_terms(wallet: Wallet) -> Terms | str:
    """The amounts of the settings in effect (every rail but a card's)."""
    settings = wallet.settings
    if settings is None:
        return BlockReason.NO_SETTINGS
    return Terms(
        settings.limit_threshold, settings.trigger_amount, settings.currency, settings.amounts
    )


class InstantRail:
    """The defaults of a rail settled in the deciding transaction: the settings' own amounts,
    never paused, nothing charged outside."""

    method: PaymentMethod

    def settings_error(self, wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
        return None

    def terms(self, wallet: Wallet) -> Terms | str:
        return settings_terms(wallet)

    def paused(self, wallet: Wallet) -> str | None:
        return None

    def charged(self, topup: TopUp, result: ChargeResult) -> Settled:
        raise TypeError(f"the {self.method} rail settles in the deciding transaction")
