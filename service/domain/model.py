"""Plain data of the domain: what came in, what we know of a wallet, what we decided."""

from __future__ import annotations

from dataclasses import field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from service.domain.usage import Usage
from service.domain.values import value


class PaymentMethod(StrEnum):
    CHEQUE_TT = "cheque_tt"
    STRIPE = "stripe"
    MASTER_ACCOUNT = "master_account"


class Origin(StrEnum):
    FINANCE_APP = "finance_app"
    ONLINE_TOP_UP = "online_top_up"


class AmountMode(StrEnum):
    """How much one top-up is (contract v2, "How much")."""

    FIXED = "fixed"  # the Trigger Amount (v1)
    TO_TARGET = "to_target"  # up to `target_balance`
    COVER_GAP = "cover_gap"  # the smallest whole multiple of the Trigger Amount above the threshold


class InvoiceStatus(StrEnum):
    ISSUED = "issued"
    PAID = "paid"  # closes the invoice
    VOID = "void"  # closes the invoice


@value
class Amounts:
    """The v2 amount settings beside the Trigger Amount: how much one top-up is and its caps.
    For a Stripe customer they belong to the card, like the Trigger Amount."""

    mode: AmountMode = AmountMode.FIXED
    target_balance: Decimal | None = None  # with TO_TARGET
    max_amount: Decimal | None = None  # no single top-up is larger
    monthly_cap: Decimal | None = None  # a calendar month's top-ups add up to at most this


FIXED_AMOUNTS = Amounts()


# --- input events, already validated against the wire contract ------------------------------


@value
class BalanceChanged:
    event_id: str
    occurred_at: datetime
    customer_id: str
    currency: str
    balance: Decimal
    sequence: int | None = None
    # The event_id of the output event (e.g. a credit-issued) whose application made this
    # change, when one did (since contract v2).
    caused_by: str | None = None


@value
class SettingsUpdated:
    event_id: str
    occurred_at: datetime
    customer_id: str
    origin: Origin
    payment_method: PaymentMethod
    auto_trigger: bool
    trigger_amount: Decimal
    limit_threshold: Decimal
    currency: str
    timezone: str | None = None
    partner_id: str | None = None
    stripe_customer_id: str | None = None
    stripe_payment_method_id: str | None = None
    version: int | None = None
    amounts: Amounts = FIXED_AMOUNTS
    fallback_method: PaymentMethod | None = None
    max_open_invoices: int | None = None


@value
class InvoiceStatusChanged:
    """What became of an invoice this service requested (contract v2, optional input)."""

    event_id: str
    occurred_at: datetime
    customer_id: str
    invoice_request_id: str  # the invoice-requested event's event_id
    status: InvoiceStatus


# --- state of one wallet (a customer's or a partner's) ---------------------------------------


@value
class Card:
    """The card saved during an online top-up."""

    stripe_customer_id: str
    stripe_payment_method_id: str


@value
class CardTerms:
    """The amounts the card's owner set in the last online top-up: the only amounts the card
    is ever charged by (the Finance app cannot change them, whatever the stored method)."""

    trigger_amount: Decimal
    limit_threshold: Decimal
    currency: str
    # The (occurred_at, event_id) of the online top-up that set them: a later-dated online top-up
    # replaces them even when it is stale as settings (a Finance app update dated after it).
    newest: tuple[datetime, str] | None = None
    amounts: Amounts = FIXED_AMOUNTS

    def same_amounts(
        self,
        trigger_amount: Decimal,
        limit_threshold: Decimal,
        currency: str,
        amounts: Amounts = FIXED_AMOUNTS,
    ) -> bool:
        return (self.trigger_amount, self.limit_threshold, self.currency, self.amounts) == (
            trigger_amount,
            limit_threshold,
            currency,
            amounts,
        )


@value
class Settings:
    payment_method: PaymentMethod
    auto_trigger: bool
    trigger_amount: Decimal
    limit_threshold: Decimal
    currency: str
    timezone: str | None
    partner_id: str | None
    origin: Origin
    version: int | None  # the highest version seen
    occurred_at: datetime
    event_id: str
    newest: tuple[datetime, str] | None = None  # the greatest (occurred_at, event_id) applied
    amounts: Amounts = FIXED_AMOUNTS
    fallback_method: PaymentMethod | None = None
    max_open_invoices: int | None = None


@value
class Balance:
    amount: Decimal
    currency: str
    occurred_at: datetime
    sequence: int | None  # the highest sequence seen
    event_id: str
    newest: tuple[datetime, str] | None = None  # the greatest (occurred_at, event_id) applied


@value
class Credit:
    """Credit this service issued from a wallet (as a partner's master account), reserved
    until a balance event of that wallet names it in `caused_by`, or the hold passes."""

    issued_at: datetime  # this service's clock when it decided (for the hold)
    amount: Decimal
    event_id: str | None = None  # the credit-issued event's id (None: issued before v2)


@value
class MonthSpend:
    """What this service topped up in one calendar month of the customer's timezone: the
    amounts of its invoice-requested and credit-issued events, and of the card charges not
    settled yet (a failed one is given back)."""

    month: str  # YYYY-MM
    spent: Decimal
    # The cap notices already decided this month (NoticeType values).
    notices: frozenset[str] = field(default_factory=frozenset)
    # The record of an earlier month, kept beside this one: a change of timezone can date the
    # next event back in the month before (up to 26 hours), whose cap still holds.
    earlier: MonthSpend | None = None


@value
class OpenInvoice:
    """An invoice this service requested that no paid or void status has closed yet."""

    invoice_request_id: str
    business_date: date


@value
class Wallet:
    customer_id: str
    settings: Settings | None = None
    card: Card | None = None
    # After a hard card failure, Stripe top-ups wait for new card details.
    stripe_paused: bool = False
    balance: Balance | None = None
    # Credit issued from this wallet that no balance event has shown as applied yet.
    credits_out: tuple[Credit, ...] = ()
    # Business dates whose daily key is taken (only the recent ones matter).
    attempt_dates: frozenset[date] = field(default_factory=frozenset)
    # The card's own amounts (set by online top-ups only).
    card_terms: CardTerms | None = None
    # The end of the last attempt's business day, in the timezone that attempt used: no new
    # attempt for an event dated before it, whatever the timezone is now.
    attempt_day_end: datetime | None = None
    # Top-ups of the current month (monthly_cap).
    month: MonthSpend | None = None
    # Requested invoices not paid or void yet (max_open_invoices); read with the wallet, kept
    # in a table of their own.
    open_invoices: tuple[OpenInvoice, ...] = ()
    # The business date of the last trigger_amount_too_low notice (at most one per 7 days).
    advised_on: date | None = None
    # The customer's usage per business day of the last days (the Trigger Amount advisor).
    usage: Usage | None = None


# --- decisions --------------------------------------------------------------------------------


@value
class TopUp:
    """A top-up that is due and holds its daily key."""

    customer_id: str
    business_date: date
    trigger_event_id: str
    balance_at_trigger: Decimal
    limit_threshold: Decimal
    amount: Decimal
    currency: str
    payment_method: PaymentMethod
    partner_id: str | None = None
    card: Card | None = None
    amount_mode: AmountMode = AmountMode.FIXED
    # The method that goes on in the same attempt when this one fails (settings' fallback_method).
    fallback_method: PaymentMethod | None = None
    # On a fallback step: the method that failed before it (its events add the method to
    # their id).
    fallback_from: PaymentMethod | None = None

    @property
    def idempotency_key(self) -> str:
        return daily_key(self.customer_id, self.business_date)


def daily_key(customer_id: str, business_date: date) -> str:
    """String form of the daily key. '/' never occurs in an id, so the form is unambiguous."""
    return f"{customer_id}/{business_date.isoformat()}"
