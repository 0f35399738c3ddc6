"""Stripe: the customer's saved card is charged, outside the deciding transaction, in phases
(see `service.service_layer.charger`). A card is charged only the amounts its owner set in the
latest online top-up, and a hard failure of the card pauses its top-ups until new details are
saved.
"""

from __future__ import annotations

from service.domain.model import (
    FIXED_AMOUNTS,
    Amounts,
    Origin,
    PaymentMethod,
    SettingsUpdated,
    TopUp,
    Wallet,
)
from service.domain.money import card_amount_error
from service.domain.rails.base import (
    ChargeLater,
    ChargeResult,
    ChargeStatus,
    Due,
    FundingSource,
    Output,
    Settled,
    Step,
    Terms,
)
from service.domain.reasons import (
    TEMPORARY_DECLINES,
    BlockReason,
    DeadLetterReason,
    FailureReason,
)


def pauses_card(result: ChargeResult) -> bool:
    """Whether this result pauses Stripe top-ups: a hard failure of the card itself, never a
    decline documented as temporary."""
    return (
        result.status is ChargeStatus.FAILED
        and result.card_unusable
        and result.reason not in TEMPORARY_DECLINES
    )


class Stripe:
    method = PaymentMethod.STRIPE

    def settings_error(self, wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
        for name, amount in (
            ("trigger_amount", event.trigger_amount),
            ("max_amount", event.amounts.max_amount),
        ):
            problem = None if amount is None else card_amount_error(amount, event.currency)
            if problem is not None:
                return (DeadLetterReason.INVALID_AMOUNT_FOR_CARD, f"{name}: {problem}")
        if event.origin is Origin.FINANCE_APP:
            return _locked(wallet, event)
        return None

    def terms(self, wallet: Wallet) -> Terms | str:
        # A card is charged only what its owner set in the latest online top-up.
        terms = wallet.card_terms
        if terms is None:
            return BlockReason.STRIPE_CARD_TERMS_UNKNOWN
        return Terms(
            terms.limit_threshold, terms.trigger_amount, terms.currency, terms.amounts, card=True
        )

    def paused(self, wallet: Wallet) -> str | None:
        return BlockReason.STRIPE_PAUSED if wallet.stripe_paused else None

    def settle(self, due: Due) -> Step:
        return ChargeLater()

    def charged(self, topup: TopUp, result: ChargeResult) -> Settled:
        if result.status is ChargeStatus.SUCCEEDED:
            assert result.payment_intent_id is not None
            return Settled(
                Output.CREDIT_ISSUED,
                funding_source=FundingSource.STRIPE,
                payment_intent_id=result.payment_intent_id,
            )
        card = topup.card
        return Settled(
            Output.TOP_UP_FAILED,
            result.reason or FailureReason.CARD_DECLINED,
            result.detail,
            payment_intent_id=result.payment_intent_id,
            pause_card=card.stripe_payment_method_id if card and pauses_card(result) else None,
        )


def _locked(wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
    """The Finance app may choose Stripe only with the amounts the card's owner set."""
    if wallet.card is None:
        return (
            DeadLetterReason.STRIPE_CARD_MISSING,
            "the Finance app may choose Stripe only for a customer whose card is on "
            "record (saved during an online top-up)",
        )
    # Whatever the stored method is (since v2): a round trip through another method must
    # not let the Finance app charge the card an amount its owner never set.
    terms = wallet.card_terms
    if terms is not None and terms.same_amounts(
        event.trigger_amount, event.limit_threshold, event.currency, event.amounts
    ):
        return None
    card_set = (
        "not known (save the card again in an online top-up)"
        if terms is None
        else f"{terms.trigger_amount} / {terms.limit_threshold} {terms.currency}"
        + _v2(terms.amounts)
    )
    return (
        DeadLetterReason.STRIPE_SETTINGS_LOCKED,
        "Trigger Amount and Limit Threshold of a Stripe customer are set during "
        f"online top-up; the Finance app cannot change them (the card's: {card_set}; "
        f"sent: {event.trigger_amount} / {event.limit_threshold} {event.currency}"
        f"{_v2(event.amounts)})",
    )


def _v2(amounts: Amounts) -> str:
    """The v2 amount settings, when any differs from v1's."""
    if amounts == FIXED_AMOUNTS:
        return ""
    return (
        f" {amounts.mode}, target {amounts.target_balance}, max {amounts.max_amount}, "
        f"cap {amounts.monthly_cap}"
    )
