"""The Trigger Amount advisor (contract v2, `trigger_amount_too_low`): the seed's own advice,
"increase the Trigger Amount according to the usage of the customer", made when a top-up is
decided (see `usage.advice` for when, and what it recommends)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from service.domain.model import TopUp, Wallet
from service.domain.notices import Notice
from service.domain.reasons import NoticeType
from service.domain.usage import advice


def advised(
    wallet: Wallet, topup: TopUp, trigger_amount: Decimal
) -> tuple[Wallet, tuple[Notice, ...]]:
    """The wallet (with the notice's date) and the notice, when the top-up just decided shows
    the Trigger Amount too low for the customer's usage; else the wallet as it is."""
    day = topup.business_date
    found = advice(
        wallet.usage,
        day,
        amount=topup.amount,
        balance_at_trigger=topup.balance_at_trigger,
        threshold=topup.limit_threshold,
        currency=topup.currency,
        last_notice=wallet.advised_on,
    )
    if found is None:
        return wallet, ()
    notice = Notice(
        wallet.customer_id,
        NoticeType.TRIGGER_AMOUNT_TOO_LOW,
        day.isoformat(),
        currency=topup.currency,
        trigger_amount=trigger_amount,
        observed_daily_usage=found.observed_daily_usage,
        recommended_trigger_amount=found.recommended_trigger_amount,
    )
    return replace(wallet, advised_on=day), (notice,)
