"""Invoices this service requested (Cheque / TT, contract v2): what an `invoice-status-changed`
record does to the customer's open invoices, when a customer's open invoices matter, and the
`invoice_overdue` notice of one open too long. Pure: the service layer loads and writes them.

A close (`paid`, `void`) frees a place under `max_open_invoices` but never triggers a top-up by
itself: a top-up is decided on a balance event (its business date, its balance), and a status
carries neither. The next balance event of the customer decides, and it may request the next
invoice the same business day (a suppression by `invoice_open` does not use the day).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

from service.domain import rules
from service.domain.model import (
    InvoiceStatus,
    InvoiceStatusChanged,
    OpenInvoice,
    PaymentMethod,
    Settings,
    SettingsUpdated,
    Wallet,
)
from service.domain.notices import Notice
from service.domain.reasons import InvoiceOutcome, NoticeType
from service.domain.values import value

CLOSING = frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID})


@value
class StatusApplied:
    """What one status record came to: the wallet after it and the outcome, or (a status
    dated too far ahead) the dead-letter reason and its detail."""

    wallet: Wallet
    outcome: InvoiceOutcome | None = None
    reason: str | None = None  # a DeadLetterReason when rejected
    detail: str = ""


def apply_status(
    wallet: Wallet, event: InvoiceStatusChanged, now: datetime, policy: rules.Policy
) -> StatusApplied:
    """`paid`/`void` close an open invoice of this customer, `issued` keeps it open, and an
    invoice that is not open (unknown, not ours, closed already: a redelivery) changes
    nothing. A status dated beyond the allowed skew is rejected, as every input is."""
    too_early = rules._future_dated(wallet, event.occurred_at, now, policy)
    if too_early is not None:
        return StatusApplied(wallet, reason=too_early.reason, detail=too_early.detail)
    wanted = event.invoice_request_id
    if not any(i.invoice_request_id == wanted for i in wallet.open_invoices):
        return StatusApplied(wallet, InvoiceOutcome.UNKNOWN_INVOICE)
    if event.status not in CLOSING:
        return StatusApplied(wallet, InvoiceOutcome.NOTED)
    left = tuple(i for i in wallet.open_invoices if i.invoice_request_id != wanted)
    return StatusApplied(replace(wallet, open_invoices=left), InvoiceOutcome.CLOSED)


def requested(wallet: Wallet, invoice: OpenInvoice) -> Wallet:
    """The wallet with an invoice it just requested counted as open (once)."""
    if any(i.invoice_request_id == invoice.invoice_request_id for i in wallet.open_invoices):
        return wallet
    return replace(wallet, open_invoices=(*wallet.open_invoices, invoice))


def counts_open_invoices(settings: Settings | SettingsUpdated | None) -> bool:
    """Whether these settings limit open invoices: `max_open_invoices` set, with Cheque / TT as
    the payment method or its fallback (only then do a wallet's open invoices decide)."""
    if settings is None or settings.max_open_invoices is None:
        return False
    cheque = PaymentMethod.CHEQUE_TT
    return settings.payment_method is cheque or settings.fallback_method is cheque


def overdue_notice(
    customer_id: str,
    invoice_request_id: str,
    business_date: date,
    amount: Decimal,
    currency: str,
    requested_at: datetime,
    now: datetime,
) -> Notice:
    """The `invoice_overdue` notice of an invoice requested at `requested_at` and still open
    at `now` (its period is the invoice's business date: one per invoice)."""
    return Notice(
        customer_id,
        NoticeType.INVOICE_OVERDUE,
        business_date.isoformat(),
        currency=currency,
        invoice_request_id=invoice_request_id,
        amount=amount,
        open_days=max((now - requested_at).days, 0),
    )
