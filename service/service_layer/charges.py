"""A Stripe charge's row (a claimed daily key), the store that moves it through its phases,
and what a final charge result comes to (the charger and an operator settle it the same way).

A charge that fails goes on with the top-up's `fallback_method` (contract v2), in the same
transaction that records the result: the store locks the customer's wallet (and, for a master
account, the partner's), `charge_outcome` decides from them, and the store persists what it
decided. Pure of I/O: the decision is the domain's (`Fallback.after_charge`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from service.config import Topics
from service.contract import messages
from service.domain.model import PaymentMethod, TopUp, Wallet
from service.domain.notices import Notice, give_back
from service.domain.outcomes import Policy
from service.domain.rails import DEFAULT_RAILS, ChargeResult, Due, Output, Rail, Rails, Settled
from service.domain.rails.fallback import Fallback
from service.domain.reasons import NoticeType
from service.service_layer.outbox import output_record
from service.service_layer.ports import OutboxRecord
from service.service_layer.settlement import settled_record

# How long a partner's credit stays reserved unless a balance event names it (the default of
# AUTO_TOPUP_PARTNER_CREDIT_HOLD_SECONDS).
CREDIT_HOLD = Policy().credit_hold


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


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """The open_invoices row of an invoice a fallback step requested (Cheque / TT)."""

    invoice_request_id: str  # the invoice-requested event's event_id
    customer_id: str
    business_date: date
    amount: Decimal
    currency: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """What a settled charge comes to: the daily key's result and the event to publish, and
    the card to pause (a hard failure of the card itself); after a failure, what the fallback
    changed (the partner's wallet with the credit reserved, the customer's month given back),
    the notices to queue and the open invoice a fallback requested."""

    result: str  # credit_issued | invoice_requested | failed
    reason: str | None
    detail: str
    record: OutboxRecord
    payment_intent_id: str | None = None
    pause_card: str | None = None
    changed: tuple[Wallet, ...] = ()
    notices: tuple[OutboxRecord, ...] = ()
    open_invoice: InvoiceRow | None = None
    # The top-up as settled (a fallback step's method and `fallback_from`).
    topup: TopUp | None = None


# The wallets a charge's result may change, locked, by customer_id.
Wallets = Mapping[str, Wallet]
# What a charge comes to, given its wallets as locked (the store calls it in its transaction).
Decide = Callable[[Wallets], ChargeOutcome]


class ChargeStore(Protocol):
    async def lease(self, limit: int, lease_seconds: float, now: datetime) -> list[PendingCharge]:
        """Takes the due charges ('charging', one more attempt); `now` becomes the first
        attempt's time of a charge never attempted before."""
        ...

    async def finish(self, charge: PendingCharge, decide: Decide) -> ChargeOutcome | None:
        """In one transaction: locks the charge's wallets (`charge_wallets`, in customer_id
        order), asks `decide`, and records the result, its output event and notices, the
        changed wallets, a fallback's open invoice and the card's pause. None if another
        worker settled it first (nothing written)."""
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


def charge_wallets(topup: TopUp) -> list[str]:
    """The wallets whose lock settling this charge takes, in customer_id order (the batch
    handler's order, so that the two never deadlock): the customer's (its month), and the
    partner's when the fallback is a master account."""
    ids = {topup.customer_id}
    if topup.fallback_method is PaymentMethod.MASTER_ACCOUNT and topup.partner_id is not None:
        ids.add(topup.partner_id)
    return sorted(ids)


def _fallback_due(topup: TopUp, wallets: Wallets, now: datetime, hold: timedelta) -> Due:
    """What the fallback step needs: the partner's wallet as locked, the customer's, and the
    id of the credit a master account would issue (`<daily key>|credit-issued|master_account`)."""
    payer = wallets.get(topup.partner_id) if topup.partner_id is not None else None
    step = replace(
        topup, payment_method=PaymentMethod.MASTER_ACCOUNT, fallback_from=topup.payment_method
    )
    return Due(
        topup,
        now,
        payer,
        messages.event_id(topup, messages.CREDIT_ISSUED),
        hold,
        wallets.get(topup.customer_id),
        messages.event_id(step, messages.CREDIT_ISSUED),
    )


def _after_failure(
    rail: Rail,
    rails: Rails,
    topup: TopUp,
    card: Settled,
    wallets: Wallets,
    now: datetime,
    hold: timedelta,
) -> Settled:
    """The card's result, or, when it failed and the top-up has a fallback, the fallback's."""
    method = topup.fallback_method
    if card.output is not Output.TOP_UP_FAILED or method is None or method is rail.method:
        return card
    fallback = Fallback(rail, rails[method])
    return fallback.after_charge(_fallback_due(topup, wallets, now, hold), card)


def _pauses(customer: Wallet | None, pause_card: str | None) -> bool:
    """Whether the pause takes (pause_stripe): the failed card is still the one on record (new
    details saved meanwhile are not paused, and their owner needs no notice)."""
    if pause_card is None:
        return False
    card = customer.card if customer is not None else None
    return customer is None or (card is not None and card.stripe_payment_method_id == pause_card)


def _stripe_paused(topics: Topics, topup: TopUp, reason: str | None, now: datetime) -> OutboxRecord:
    notice = Notice(
        topup.customer_id, NoticeType.STRIPE_PAUSED, topup.business_date.isoformat(), reason=reason
    )
    return output_record(topics.auto_topup_notice, messages.notice(notice, now))


def _open_invoice(
    topup: TopUp, settled: Settled, record: OutboxRecord, now: datetime
) -> InvoiceRow | None:
    if settled.output is not Output.INVOICE_REQUESTED or topup.fallback_from is None:
        return None
    return InvoiceRow(
        record.dedupe_key, topup.customer_id, topup.business_date, topup.amount, topup.currency, now
    )


def charge_outcome(
    topics: Topics,
    charge: PendingCharge,
    result: ChargeResult,
    now: datetime,
    rails: Rails = DEFAULT_RAILS,
    wallets: Wallets | None = None,
    credit_hold: timedelta = CREDIT_HOLD,
) -> ChargeOutcome:
    """A final result (succeeded or failed) as its rail decides it, with the output event under
    the daily key's deterministic event id: the same whoever settles it (the charger, or an
    operator). `wallets` are the charge's wallets as locked (`charge_wallets`): a failure goes
    on with the top-up's fallback method, and the attempt's final failure gives the amount
    back to the customer's month (a fallback that succeeded keeps it counted)."""
    topup = charge.topup
    wallets = wallets or {}
    rail = rails[topup.payment_method]
    card = rail.charged(topup, result)
    settled = _after_failure(rail, rails, topup, card, wallets, now, credit_hold)
    final = settled.topup or topup
    record = settled_record(topics, final, settled, now, charge.trace_headers)
    changed = list(settled.changed)
    customer = wallets.get(topup.customer_id)
    if settled.output is Output.TOP_UP_FAILED and customer is not None:
        returned = give_back(customer, topup)
        if returned != customer:
            changed.append(returned)
    paused = _pauses(customer, settled.pause_card)
    notices = (_stripe_paused(topics, topup, card.reason, now),) if paused else ()
    return ChargeOutcome(
        settled.result,
        settled.reason,
        settled.detail,
        record,
        result.payment_intent_id,
        settled.pause_card,
        tuple(changed),
        notices,
        _open_invoice(final, settled, record, now),
        final,
    )
