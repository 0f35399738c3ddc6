"""Open invoices in the batch (contract v2, `max_open_invoices`): loaded with the locked wallets
of the customers whose settings count them, one added for each invoice a top-up requests, and
the `invoice-status-changed` records applied; all written in the batch's transaction. The rule
itself (`invoice_open`) is the Cheque / TT rail's; what a status does is in
`service/domain/invoices.py`.

A status never triggers a top-up: a close frees a place, and the customer's next balance event
(in this batch or a later one) decides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from service.contract import messages
from service.contract.codec import Invalid
from service.domain import invoices, rules
from service.domain.model import InvoiceStatusChanged, OpenInvoice, SettingsUpdated, Wallet
from service.domain.reasons import ClaimResult, InvoiceOutcome
from service.service_layer.ports import (
    CountKey,
    DecisionLog,
    InputRecord,
    InvoiceChange,
    InvoiceRow,
    InvoiceStore,
    Tally,
)
from service.service_layer.topups import SettledTopUp


@dataclass(slots=True)
class InvoiceWrites:
    """What one batch writes to `open_invoices`: the invoices it requested, then the statuses
    it applied (the last one per invoice)."""

    requested: list[InvoiceRow] = field(default_factory=list)
    statuses: dict[str, InvoiceChange] = field(default_factory=dict)


def _needing(wallets: MutableMapping[str, Wallet], events: Iterable[object]) -> set[str]:
    """The customers whose open invoices this batch needs: their stored settings or settings
    of this batch count them, or a status of one of their invoices is in the batch."""
    ids = {i for i, w in wallets.items() if invoices.counts_open_invoices(w.settings)}
    for event in events:
        if isinstance(event, InvoiceStatusChanged) or (
            isinstance(event, SettingsUpdated) and invoices.counts_open_invoices(event)
        ):
            ids.add(event.customer_id)
    return ids & wallets.keys()


async def load(
    store: InvoiceStore, wallets: MutableMapping[str, Wallet], events: Iterable[object]
) -> None:
    """Fills the locked wallets' open invoices, in one query, only when one needs them (the
    usual batch needs none: no query)."""
    ids = _needing(wallets, events)
    if not ids:
        return
    found = await store.open_invoices(sorted(ids))
    for customer_id in ids:
        wallets[customer_id] = replace(
            wallets[customer_id], open_invoices=found.get(customer_id, ())
        )


def note_requested(
    writes: InvoiceWrites, wallets: MutableMapping[str, Wallet], done: SettledTopUp, now: datetime
) -> None:
    """A top-up of this batch requested an invoice: its row to insert, and the wallet counts it
    as open at once (a later due top-up of the batch is suppressed by it)."""
    if done.claim.result != ClaimResult.INVOICE_REQUESTED:
        return
    topup = done.topup  # as settled: a fallback step's invoice has an id of its own
    invoice_id = messages.event_id(topup, messages.INVOICE_REQUESTED)
    writes.requested.append(
        InvoiceRow(
            invoice_id, topup.customer_id, topup.business_date, topup.amount, topup.currency, now
        )
    )
    wallet = wallets.get(topup.customer_id)
    if wallet is not None:
        opened = OpenInvoice(invoice_id, topup.business_date)
        wallets[topup.customer_id] = invoices.requested(wallet, opened)


class Batch(Protocol):
    """What of the handler's batch a status record touches."""

    @property
    def wallets(self) -> dict[str, Wallet]: ...
    @property
    def now(self) -> datetime: ...
    @property
    def invoices(self) -> InvoiceWrites: ...
    @property
    def report(self) -> Report: ...


class Report(Protocol):
    @property
    def counts(self) -> Counter[CountKey]: ...
    @property
    def log(self) -> list[DecisionLog]: ...


def outside_rules(
    batch: Batch,
    record: InputRecord,
    event: Invalid | InvoiceStatusChanged,
    policy: rules.Policy,
    reject: Callable[..., None],
) -> None:
    """A record the balance and settings rules do not decide: an undecodable one is
    dead-lettered (`reject`), an invoice status applied (it never triggers a top-up)."""
    if isinstance(event, Invalid):
        reject(batch, record, event)
    else:
        apply_status(batch, record, event, policy, reject)


def apply_status(
    batch: Batch,
    record: InputRecord,
    event: InvoiceStatusChanged,
    policy: rules.Policy,
    reject: Callable[..., None],
) -> None:
    """One `invoice-status-changed` record: the wallet's open invoices and the row to write,
    counted and logged as every record is; `reject` dead-letters one dated too far ahead."""
    wallet = batch.wallets.get(event.customer_id) or Wallet(event.customer_id)
    applied = invoices.apply_status(wallet, event, batch.now, policy)
    if applied.outcome is None:
        assert applied.reason is not None
        reject(batch, record, Invalid(applied.reason, applied.detail), event)
        return
    outcome = applied.outcome
    if outcome is not InvoiceOutcome.UNKNOWN_INVOICE:
        closed = batch.now if outcome is InvoiceOutcome.CLOSED else None
        change = InvoiceChange(event.invoice_request_id, event.status, closed)
        batch.invoices.statuses[event.invoice_request_id] = change
        batch.wallets[event.customer_id] = applied.wallet
    batch.report.counts[CountKey(Tally.CONSUMED, outcome, record.topic)] += 1
    batch.report.log.append(
        replace(
            DecisionLog.of(record, event, outcome, None),
            detail=f"{event.status} {event.invoice_request_id}",
        )
    )


async def write(store: InvoiceStore, writes: InvoiceWrites) -> None:
    """The batch's invoices, then its statuses (an invoice requested and closed in one batch
    is inserted, then closed)."""
    if writes.requested:
        await store.add_open_invoices(writes.requested)
    if writes.statuses:
        await store.set_invoice_statuses(list(writes.statuses.values()))
