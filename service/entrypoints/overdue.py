"""Wiring of the invoice_overdue notices (service/service_layer/overdue.py) for `run`."""

from __future__ import annotations

import asyncpg

from service.adapters.kafka.relay import OutboxRelay
from service.adapters.postgres.invoices import PgOverdueStore
from service.config import Settings
from service.entrypoints.metrics import Metrics
from service.service_layer.overdue import OverdueNotices
from service.service_layer.ports import Clock

__all__ = ["OverdueNotices", "overdue_notices"]


def overdue_notices(
    settings: Settings,
    pool: asyncpg.Pool,
    clock: Clock,
    metrics: Metrics,
    relay: OutboxRelay,
) -> OverdueNotices:
    """The worker on the service's pool and clock, started: counted, and the relay woken,
    per round that queued notices."""

    def noticed(count: int) -> None:
        metrics.invoice_overdue_notices.inc(count)
        relay.wake()

    worker = OverdueNotices(
        PgOverdueStore(pool),
        clock,
        settings.topics,
        settings.invoice_overdue_days,
        interval=settings.invoice_overdue_interval_seconds,
        on_noticed=noticed,
    )
    worker.start()
    return worker
