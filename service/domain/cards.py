"""The card a customer saves during an online top-up, and the amounts it may be charged.

For a Stripe customer the card and its Trigger Amount and Limit Threshold are set only by an
online top-up; the newest online top-up's card wins, whatever came from the Finance app.
"""

from __future__ import annotations

from dataclasses import replace

from service.domain.model import Card, CardTerms, Settings, SettingsUpdated, Wallet


def card_may_be_newer(wallet: Wallet, applied: Settings, event: SettingsUpdated) -> bool:
    """A card saved before its time was recorded (v1, before migration 0005) was set by
    settings no later than those applied: a stale online top-up dated no later than them may
    be older than the card (a replay of an old one), so it must not replace it or lift a pause.
    One dated after every settings applied is after the card too."""
    if wallet.card is None or (wallet.card_terms and wallet.card_terms.newest):
        return False
    applied_at = applied.newest or (applied.occurred_at, applied.event_id)
    return (event.occurred_at, event.event_id) <= applied_at


def saved_card(wallet: Wallet, event: SettingsUpdated) -> Wallet:
    """The card and its amounts from an online top-up, unless the card's are newer."""
    assert event.stripe_customer_id is not None
    assert event.stripe_payment_method_id is not None
    at = (event.occurred_at, event.event_id)
    terms = wallet.card_terms
    if terms is not None and terms.newest is not None and at <= terms.newest:
        return wallet
    return replace(
        wallet,
        card=Card(event.stripe_customer_id, event.stripe_payment_method_id),
        card_terms=CardTerms(
            event.trigger_amount, event.limit_threshold, event.currency, at, event.amounts
        ),
        stripe_paused=False,  # new card details: Stripe top-ups may go again
    )
