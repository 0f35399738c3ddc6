"""Credits issued from a partner's wallet that its wallet service has not shown as applied yet.

A partner's balance event names the credit it includes in `caused_by` (since contract v2); a
credit no event names stops being reserved after the hold (measured on this service's clock).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from service.domain.model import Credit, Wallet
from service.domain.money import minus, total


def unreleased(
    credits: tuple[Credit, ...], caused_by: str | None, now: datetime, hold: timedelta
) -> tuple[Credit, ...]:
    """The credits still reserved: not named by this balance event (a wallet's balance includes
    a credit from the event that names it on), and not past the hold."""
    if not credits:  # nearly every wallet: not a partner, or nothing outstanding
        return credits
    expired = now - hold
    return tuple(
        c
        for c in credits
        if c.issued_at > expired and (caused_by is None or c.event_id != caused_by)
    )


def available_funds(
    partner: Wallet, now: datetime | None = None, hold: timedelta | None = None
) -> Decimal | None:
    """The partner's last known balance minus every credit this service issued from it that
    the wallet service has not shown as applied yet (and whose hold has not passed at `now`;
    without `now`, every reserved credit counts)."""
    if partner.balance is None:
        return None
    credits = partner.credits_out
    if now is not None and hold is not None:
        credits = unreleased(credits, None, now, hold)
    return minus(partner.balance.amount, total(c.amount for c in credits))
