"""The `invoice_overdue` notice (contract v2): a background worker that, every interval, takes
the open invoices requested more than AUTO_TOPUP_INVOICE_OVERDUE_DAYS ago that have had no
notice, and queues one `invoice_overdue` notice each in the outbox, marking them noticed, in one
transaction per round (`OverdueStore.notify_overdue`: a bounded batch, rows held elsewhere
skipped). A round that found a full batch is followed by another at once.

"Now" is the service clock (`Settings.clock()`); `requested_at` is the clock of the batch that
requested the invoice. The notice's id is that of (customer_id, invoice_overdue, the invoice's
business date), so a notice queued twice (two instances racing past SKIP LOCKED cannot, a
restored database could) is published once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from service.config import Topics
from service.domain.invoices import overdue_notice
from service.service_layer.ports import Clock, InvoiceRow, OutboxRecord, OverdueStore
from service.service_layer.topups import notice_records
from service.service_layer.worker import Background, Worker

log = logging.getLogger(__name__)

# Invoices one round takes (one transaction); a full round is followed by another at once.
BATCH_SIZE = 100


def overdue_records(
    topics: Topics, rows: Sequence[InvoiceRow], now: datetime
) -> list[OutboxRecord]:
    """The `invoice_overdue` notices of these invoices, as outbox rows."""
    notices = [
        overdue_notice(
            r.customer_id,
            r.invoice_request_id,
            r.business_date,
            r.amount,
            r.currency,
            r.requested_at,
            now,
        )
        for r in rows
    ]
    return notice_records(topics, notices, now)


class OverdueNotices(Background):
    """Queues the `invoice_overdue` notices, every `interval` seconds (see the module)."""

    _unfinished = "invoice overdue notices: still running after %.1fs; cancelled"

    def __init__(
        self,
        store: OverdueStore,
        clock: Clock,
        topics: Topics,
        overdue_days: int,
        *,
        interval: float,
        batch_size: int = BATCH_SIZE,
        on_noticed: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._topics = topics
        self._overdue = timedelta(days=overdue_days)
        self._batch_size = batch_size
        self._on_noticed = on_noticed
        self._worker = Worker("invoice-overdue", self._round, poll_interval=interval)

    async def run_once(self) -> int:
        """One round: how many notices it queued."""
        now = self._clock()
        noticed = await self._store.notify_overdue(
            now - self._overdue,
            self._batch_size,
            lambda rows: overdue_records(self._topics, rows, now),
            now,
        )
        if noticed:
            log.info("invoice overdue notices queued: %d", noticed)
            if self._on_noticed is not None:
                self._on_noticed(noticed)
        return noticed

    async def _round(self) -> int:
        # Again at once only after a full batch (there may be more).
        return int(await self.run_once() >= self._batch_size)
