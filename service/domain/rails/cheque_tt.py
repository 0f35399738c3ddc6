"""Cheque / telegraphic transfer: a due top-up asks invoicing for an invoice, at once."""

from __future__ import annotations

from service.domain.model import PaymentMethod
from service.domain.rails.base import Due, InstantRail, Output, Settled, Step


class ChequeTT(InstantRail):
    method = PaymentMethod.CHEQUE_TT

    def settle(self, due: Due) -> Step:
        return Settled(Output.INVOICE_REQUESTED)
