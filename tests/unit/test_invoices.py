"""Open invoices (contract v2, `max_open_invoices`, `invoice-status-changed`): the domain
function, the in-memory store, and the batch handler on the in-memory unit of work."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from service.config import Topics
from service.contract import messages
from service.domain import invoices
from service.domain.model import (
    InvoiceStatus,
    InvoiceStatusChanged,
    OpenInvoice,
    PaymentMethod,
    TopUp,
    Wallet,
)
from service.domain.reasons import (
    BlockReason,
    DeadLetterReason,
    FailureReason,
    InvoiceOutcome,
    NoticeType,
)
from service.domain.rules import Policy, apply_settings
from service.service_layer.handlers import BatchHandler, BatchReport
from service.service_layer.ports import (
    BatchStore,
    CountKey,
    InputRecord,
    InvoiceChange,
    InvoiceRow,
    Tally,
)
from tests.factories import NOW, balance_wire, dumps, eid, iso, settings, settings_wire
from tests.fakes import FakeDatabase, FakeStore, FakeUnitOfWork

TOPICS = Topics()
POLICY = Policy()
CUSTOMER = "cust-inv"
YESTERDAY = NOW - timedelta(days=1)


def _status(
    invoice_id: str, status: InvoiceStatus, *, customer: str = CUSTOMER, at: datetime = NOW
) -> InvoiceStatusChanged:
    return InvoiceStatusChanged(eid(), at, customer, invoice_id, status)


def _wallet(*ids: str) -> Wallet:
    return Wallet(CUSTOMER, open_invoices=tuple(OpenInvoice(i, NOW.date()) for i in ids))


# --- the domain function ----------------------------------------------------------------------


def test_paid_and_void_close_an_open_invoice_of_the_customer() -> None:
    for status in (InvoiceStatus.PAID, InvoiceStatus.VOID):
        done = invoices.apply_status(_wallet("a", "b"), _status("a", status), NOW, POLICY)
        assert done.outcome is InvoiceOutcome.CLOSED
        assert [i.invoice_request_id for i in done.wallet.open_invoices] == ["b"]


def test_issued_keeps_it_open() -> None:
    wallet = _wallet("a")
    done = invoices.apply_status(wallet, _status("a", InvoiceStatus.ISSUED), NOW, POLICY)
    assert done.outcome is InvoiceOutcome.NOTED
    assert done.wallet == wallet


def test_an_invoice_not_open_changes_nothing_and_a_redelivery_neither() -> None:
    wallet = _wallet("a")
    unknown = invoices.apply_status(wallet, _status("zzz", InvoiceStatus.PAID), NOW, POLICY)
    assert unknown.outcome is InvoiceOutcome.UNKNOWN_INVOICE
    assert unknown.wallet == wallet
    paid = _status("a", InvoiceStatus.PAID)
    first = invoices.apply_status(wallet, paid, NOW, POLICY)
    again = invoices.apply_status(first.wallet, paid, NOW, POLICY)
    assert first.outcome is InvoiceOutcome.CLOSED
    assert again.outcome is InvoiceOutcome.UNKNOWN_INVOICE
    assert again.wallet == first.wallet


def test_a_status_dated_beyond_the_skew_is_rejected_as_future_dated() -> None:
    late = NOW + POLICY.future_skew + timedelta(seconds=1)
    done = invoices.apply_status(
        _wallet("a"), _status("a", InvoiceStatus.PAID, at=late), NOW, POLICY
    )
    assert done.outcome is None
    assert done.reason == DeadLetterReason.FUTURE_DATED
    assert done.wallet == _wallet("a")
    within = invoices.apply_status(
        _wallet("a"), _status("a", InvoiceStatus.PAID, at=NOW + POLICY.future_skew), NOW, POLICY
    )
    assert within.outcome is InvoiceOutcome.CLOSED


def test_only_settings_that_limit_invoices_count_them() -> None:
    def with_max(method: PaymentMethod, fallback: PaymentMethod | None) -> Any:
        event = replace(
            settings(CUSTOMER, method=method), max_open_invoices=1, fallback_method=fallback
        )
        return event

    assert invoices.counts_open_invoices(with_max(PaymentMethod.CHEQUE_TT, None))
    assert invoices.counts_open_invoices(
        with_max(PaymentMethod.MASTER_ACCOUNT, PaymentMethod.CHEQUE_TT)
    )
    assert not invoices.counts_open_invoices(with_max(PaymentMethod.MASTER_ACCOUNT, None))
    assert not invoices.counts_open_invoices(settings(CUSTOMER))  # no max_open_invoices
    assert not invoices.counts_open_invoices(None)
    applied = apply_settings(Wallet(CUSTOMER), with_max(PaymentMethod.CHEQUE_TT, None), NOW, POLICY)
    assert invoices.counts_open_invoices(applied.wallet.settings)


def test_the_overdue_notice_names_the_invoice_and_its_days() -> None:
    notice = invoices.overdue_notice(
        CUSTOMER,
        "inv-1",
        date(2026, 11, 10),
        Decimal("100.00"),
        "USD",
        NOW - timedelta(days=8, hours=1),
        NOW,
    )
    assert notice.type is NoticeType.INVOICE_OVERDUE
    assert (notice.period, notice.invoice_request_id, notice.open_days) == (
        "2026-11-10",
        "inv-1",
        8,
    )
    assert (notice.amount, notice.currency) == (Decimal("100.00"), "USD")


# --- the in-memory store ----------------------------------------------------------------------


def _row(invoice_id: str, customer: str = CUSTOMER, *, at: datetime = NOW) -> InvoiceRow:
    return InvoiceRow(invoice_id, customer, at.date(), Decimal("100.00"), "USD", at)


async def test_the_memory_store_keeps_open_invoices_in_their_table_only() -> None:
    db = FakeDatabase()
    async with db.unit_of_work() as uow:
        store = uow.store
        wallets = await store.lock_wallets([CUSTOMER], NOW.date())
        await store.add_open_invoices(
            [_row("b", at=NOW), _row("a", at=YESTERDAY), _row("c", "other")]
        )
        await store.add_open_invoices([replace(_row("a"), amount=Decimal(1))])  # kept as it was
        # the wallet row never holds them: saved with some, read back with none
        await store.save_wallets(
            [replace(wallets[CUSTOMER], open_invoices=(OpenInvoice("x", NOW.date()),))]
        )
        assert (await store.lock_wallets([CUSTOMER], NOW.date()))[CUSTOMER].open_invoices == ()
        found = await store.open_invoices([CUSTOMER])
        assert [i.invoice_request_id for i in found[CUSTOMER]] == ["a", "b"]  # oldest first
        assert "other" not in found
        await store.set_invoice_statuses([InvoiceChange("a", InvoiceStatus.PAID, NOW)])
        await store.set_invoice_statuses([InvoiceChange("a", InvoiceStatus.ISSUED, None)])
        await store.set_invoice_statuses([InvoiceChange("b", InvoiceStatus.ISSUED, None)])
        await uow.commit()
    rows = db.committed.invoices
    assert rows["a"].amount == Decimal("100.00")
    assert (rows["a"].status, rows["a"].closed_at) == ("paid", NOW)  # a closed one stays closed
    assert (rows["b"].status, rows["b"].closed_at) == ("issued", None)
    async with db.unit_of_work() as uow:
        assert [
            i.invoice_request_id for i in (await uow.store.open_invoices([CUSTOMER]))[CUSTOMER]
        ] == ["b"]
        await uow.store.add_open_invoices([_row("d")])  # not committed: rolled back
    assert "d" not in db.committed.invoices


# --- the batch handler ------------------------------------------------------------------------


class _Counting:
    """A unit of work around the fake one that counts the store's open_invoices queries."""

    def __init__(self, inner: FakeUnitOfWork, calls: list[Collection[str]]) -> None:
        self._inner = inner
        self._calls = calls

    @property
    def store(self) -> BatchStore:
        inner, calls = self._inner.store, self._calls

        class Store(FakeStore):
            async def open_invoices(self, customer_ids: Collection[str]) -> Any:
                calls.append(list(customer_ids))
                return await inner.open_invoices(customer_ids)

        return Store(self._inner.tables)

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._inner.__aexit__(t, e, tb)

    async def commit(self) -> None:
        await self._inner.commit()


class _Flow:
    def __init__(self) -> None:
        self.db = FakeDatabase()
        self.calls: list[Collection[str]] = []
        self.handler = BatchHandler(
            lambda: _Counting(self.db.unit_of_work(), self.calls), lambda: NOW, POLICY, TOPICS
        )
        self.offset = 0

    def record(self, topic: str, body: dict[str, Any], customer: str = CUSTOMER) -> InputRecord:
        self.offset += 1
        return InputRecord(topic, 0, self.offset, customer.encode(), dumps(body))

    def settings(self, at: datetime = YESTERDAY - timedelta(hours=3), **extra: Any) -> InputRecord:
        return self.record(TOPICS.settings_updated, settings_wire(CUSTOMER, at=at, **extra))

    def low(self, at: datetime, customer: str = CUSTOMER) -> InputRecord:
        return self.record(
            TOPICS.wallet_balance_changed, balance_wire(customer, "1.00", at=at), customer
        )

    def status(self, invoice_id: str, status: str, at: datetime = NOW) -> InputRecord:
        body = {
            "event_id": eid(),
            "occurred_at": iso(at),
            "customer_id": CUSTOMER,
            "invoice_request_id": invoice_id,
            "status": status,
        }
        return self.record(TOPICS.invoice_status_changed, body)

    async def handle(self, *records: InputRecord) -> BatchReport:
        return await self.handler.handle(list(records))

    def invoices_requested(self) -> list[dict[str, Any]]:
        out = [r for r in self.db.committed.outbox if r.topic == TOPICS.invoice_requested]
        return [json.loads(r.value or b"") for r in out]


def _reasons(report: BatchReport) -> list[tuple[str, str | None]]:
    return [(e.outcome, e.reason) for e in report.log]


async def test_one_open_invoice_suppresses_the_next_until_it_is_paid() -> None:
    flow = _Flow()
    await flow.handle(flow.settings(max_open_invoices=1))
    await flow.handle(flow.low(YESTERDAY + timedelta(hours=2)))
    [first] = flow.invoices_requested()
    row = flow.db.committed.invoices[first["event_id"]]
    assert (row.customer_id, row.business_date, row.requested_at) == (
        CUSTOMER,
        YESTERDAY.date(),
        NOW,
    )
    assert (row.amount, row.currency, row.closed_at) == (Decimal("100.00"), "USD", None)

    suppressed = await flow.handle(flow.low(NOW - timedelta(hours=2)))
    assert _reasons(suppressed) == [("suppressed", BlockReason.INVOICE_OPEN)]
    assert len(flow.invoices_requested()) == 1

    paid = await flow.handle(flow.status(first["event_id"], "paid", NOW - timedelta(hours=1)))
    assert _reasons(paid) == [(InvoiceOutcome.CLOSED, None)]
    assert (
        paid.counts[CountKey(Tally.CONSUMED, InvoiceOutcome.CLOSED, TOPICS.invoice_status_changed)]
        == 1
    )
    assert flow.db.committed.invoices[first["event_id"]].closed_at == NOW
    assert len(flow.invoices_requested()) == 1  # a close triggers nothing by itself

    again = await flow.handle(flow.low(NOW - timedelta(minutes=30)))  # the same business day
    assert _reasons(again) == [("triggered", None)]
    second = flow.invoices_requested()[1]
    assert second["business_date"] == NOW.date().isoformat()
    assert flow.db.committed.invoices[second["event_id"]].closed_at is None


async def test_an_invoice_requested_in_a_batch_counts_at_once_in_it() -> None:
    flow = _Flow()
    await flow.handle(flow.settings(max_open_invoices=1))
    report = await flow.handle(
        flow.low(YESTERDAY + timedelta(hours=2)), flow.low(NOW - timedelta(hours=2))
    )
    assert _reasons(report) == [("triggered", None), ("suppressed", BlockReason.INVOICE_OPEN)]
    assert len(flow.invoices_requested()) == 1


async def test_a_close_in_a_batch_lets_a_later_balance_of_the_batch_request() -> None:
    flow = _Flow()
    await flow.handle(flow.settings(max_open_invoices=1))
    await flow.handle(flow.low(YESTERDAY + timedelta(hours=2)))
    [first] = flow.invoices_requested()
    report = await flow.handle(
        flow.status(first["event_id"], "issued", NOW - timedelta(hours=3)),
        flow.low(NOW - timedelta(hours=2, minutes=30)),
        flow.status(first["event_id"], "void", NOW - timedelta(hours=2)),
        flow.status(first["event_id"], "paid", NOW - timedelta(hours=2)),  # closed already
        flow.low(NOW - timedelta(hours=1)),
    )
    assert _reasons(report) == [
        (InvoiceOutcome.NOTED, None),
        ("suppressed", BlockReason.INVOICE_OPEN),
        (InvoiceOutcome.CLOSED, None),
        (InvoiceOutcome.UNKNOWN_INVOICE, None),
        ("triggered", None),
    ]
    row = flow.db.committed.invoices[first["event_id"]]
    assert (row.status, row.closed_at) == ("void", NOW)
    assert len(flow.invoices_requested()) == 2


async def test_statuses_of_unknown_invoices_and_future_dated_ones() -> None:
    flow = _Flow()
    unknown = await flow.handle(flow.status(eid(), "paid"))
    assert _reasons(unknown) == [(InvoiceOutcome.UNKNOWN_INVOICE, None)]
    late = NOW + POLICY.future_skew + timedelta(minutes=1)
    rejected = await flow.handle(flow.status(eid(), "paid", late))
    assert _reasons(rejected) == [("dead_lettered", DeadLetterReason.FUTURE_DATED)]
    assert [r.topic for r in flow.db.committed.outbox] == [TOPICS.dead_letter]
    assert flow.db.committed.invoices == {}


async def test_the_open_invoices_are_read_only_for_batches_that_need_them() -> None:
    flow = _Flow()
    await flow.handle(flow.settings())  # no max_open_invoices
    await flow.handle(flow.low(YESTERDAY + timedelta(hours=2)), flow.low(NOW, "someone-else"))
    assert flow.calls == []
    # the invoice is recorded all the same (it can be overdue), but not read back
    assert len(flow.db.committed.invoices) == 1
    await flow.handle(flow.settings(NOW - timedelta(hours=2), max_open_invoices=2))  # read
    await flow.handle(flow.low(NOW - timedelta(hours=1)), flow.low(NOW, "someone-else"))
    await flow.handle(flow.status(eid(), "issued"))
    assert flow.calls == [[CUSTOMER], [CUSTOMER], [CUSTOMER]]


async def test_a_fallback_invoice_is_recorded_under_its_own_event_id() -> None:
    flow = _Flow()
    await flow.handle(
        flow.settings(
            method="master_account",
            partner_id="partner-none",
            fallback_method="cheque_tt",
            max_open_invoices=1,
        )
    )
    await flow.handle(flow.low(YESTERDAY + timedelta(hours=2)))  # the partner's balance: unknown
    [invoice] = flow.invoices_requested()
    topup = TopUp(
        CUSTOMER,
        YESTERDAY.date(),
        "x",
        Decimal(1),
        Decimal(10),
        Decimal(100),
        "USD",
        PaymentMethod.CHEQUE_TT,
        fallback_from=PaymentMethod.MASTER_ACCOUNT,
    )
    assert invoice["event_id"] == messages.event_id(topup, messages.INVOICE_REQUESTED)
    assert list(flow.db.committed.invoices) == [invoice["event_id"]]
    # the next day the partner fails again, and no invoice goes while that one is open (the
    # fallback rail's rule: the first method's failure is published)
    report = await flow.handle(flow.low(NOW - timedelta(hours=1)))
    assert _reasons(report) == [("failed", FailureReason.PARTNER_BALANCE_UNKNOWN)]
    assert len(flow.invoices_requested()) == 1


def test_the_handler_decodes_invoice_statuses() -> None:
    flow = _Flow()
    record = flow.status("00000000-0000-4000-8000-000000000000", "paid")
    decoded = flow.handler.decode(record)
    assert isinstance(decoded, InvoiceStatusChanged)
    assert decoded.status is InvoiceStatus.PAID


async def test_the_memory_store_reads_open_invoices_through_once_as_it_does_wallets() -> None:
    asked: list[list[str]] = []

    async def elsewhere(customer_ids: Sequence[str]) -> list[InvoiceRow]:
        asked.append(list(customer_ids))
        return [_row("there", CUSTOMER, at=YESTERDAY)] if CUSTOMER in customer_ids else []

    db = FakeDatabase(invoices=elsewhere)
    handler = BatchHandler(db.unit_of_work, lambda: NOW, POLICY, TOPICS)
    flow = _Flow()
    setting = flow.settings(max_open_invoices=1)
    await handler.handle([setting])
    report = await handler.handle([flow.low(NOW - timedelta(hours=1))])
    assert _reasons(report) == [("suppressed", BlockReason.INVOICE_OPEN)]  # the one read through
    paid = await handler.handle([flow.status("there", "paid", NOW - timedelta(minutes=30))])
    assert _reasons(paid) == [(InvoiceOutcome.CLOSED, None)]
    again = await handler.handle([flow.low(NOW - timedelta(minutes=10))])
    assert _reasons(again) == [("triggered", None)]
    assert asked == [[CUSTOMER]]  # once: from then on the memory holds them
