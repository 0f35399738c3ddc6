"""The invoice_overdue worker on the in-memory store, with a fixed clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from service.adapters.memory import MemoryOverdueStore
from service.config import Topics
from service.contract.codec import notice_event_id
from service.service_layer.overdue import OverdueNotices
from service.service_layer.ports import InvoiceRow
from tests.charge_fakes import FakeClock
from tests.factories import NOW
from tests.fakes import FakeDatabase

TOPICS = Topics()
DAYS = 7


def _db(*rows: InvoiceRow) -> FakeDatabase:
    db = FakeDatabase()
    db.committed.invoices.update((r.invoice_request_id, r) for r in rows)
    return db


def _row(invoice_id: str, requested_at: datetime, **changes: Any) -> InvoiceRow:
    row = InvoiceRow(
        invoice_id,
        f"cust-{invoice_id}",
        requested_at.date(),
        Decimal("250.5"),
        "EUR",
        requested_at,
    )
    return replace(row, **changes)


def _notices(db: FakeDatabase) -> list[dict[str, Any]]:
    out = [r for r in db.committed.outbox if r.topic == TOPICS.auto_topup_notice]
    return [json.loads(r.value or b"") for r in out]


def _worker(
    db: FakeDatabase, clock: FakeClock, batch_size: int = 100, noticed: list[int] | None = None
) -> OverdueNotices:
    return OverdueNotices(
        MemoryOverdueStore(db),
        clock,
        TOPICS,
        DAYS,
        interval=60,
        batch_size=batch_size,
        on_noticed=None if noticed is None else noticed.append,
    )


async def test_one_notice_per_invoice_open_longer_than_the_days_and_never_twice() -> None:
    old = NOW - timedelta(days=DAYS, minutes=1)
    db = _db(
        _row("old", old),
        _row("young", NOW - timedelta(days=DAYS) + timedelta(minutes=1)),
        _row("paid", old, status="paid", closed_at=NOW - timedelta(days=1)),
    )
    clock = FakeClock(NOW)
    noticed: list[int] = []
    worker = _worker(db, clock, noticed=noticed)
    assert await worker.run_once() == 1
    [notice] = _notices(db)
    assert notice == {
        "event_id": notice_event_id("cust-old", "invoice_overdue", old.date().isoformat()),
        "customer_id": "cust-old",
        "type": "invoice_overdue",
        "period": old.date().isoformat(),
        "emitted_at": notice["emitted_at"],
        "currency": "EUR",
        "invoice_request_id": "old",
        "amount": "250.50",
        "open_days": DAYS,
    }
    assert db.committed.invoices["old"].overdue_noticed_at == NOW
    assert await worker.run_once() == 0  # noticed once
    clock.advance(timedelta(minutes=2))  # "young" is overdue now
    assert await worker.run_once() == 1
    assert [n["invoice_request_id"] for n in _notices(db)] == ["old", "young"]
    clock.advance(timedelta(days=30))
    assert await worker.run_once() == 0
    assert db.committed.invoices["paid"].overdue_noticed_at is None
    assert noticed == [1, 1]  # rounds that queued nothing are not reported


async def test_a_round_takes_a_bounded_batch_and_another_follows_at_once() -> None:
    rows = [_row(f"i{n}", NOW - timedelta(days=DAYS + 1, minutes=n)) for n in range(5)]
    db = _db(*rows)
    worker = _worker(db, FakeClock(NOW), batch_size=2)
    assert await worker._round() == 1  # a full batch: there may be more
    assert await worker._round() == 1
    assert await worker._round() == 0  # the last one: done
    assert len(_notices(db)) == 5
    # oldest first
    assert [n["invoice_request_id"] for n in _notices(db)][:2] == ["i4", "i3"]
