"""Cheque / telegraphic transfer: a due top-up asks invoicing for an invoice, at once; with
`max_open_invoices` (contract v2), none while that many requested invoices are open."""

from __future__ import annotations

from service.domain.model import PaymentMethod, Wallet
from service.domain.rails.base import Due, InstantRail, Output, Settled, Step
from service.domain.reasons import BlockReason


class ChequeTT(InstantRail):
    method = PaymentMethod.CHEQUE_TT

    def paused(self, wallet: Wallet) -> str | None:
        settings = wallet.settings
        limit = settings.max_open_invoices if settings is not None else None
        if limit is not None and len(wallet.open_invoices) >= limit:
            return BlockReason.INVOICE_OPEN
        return None

    def settle(self, due: Due) -> Step:
        return Settled(Output.INVOICE_REQUESTED)
