"""The retention metrics (service/service_layer/retention.py), in the service's registry: rows
pruned and the last run, as they happen; how far behind pruning is, read from the database at
scrape time (so it also shows pruning that no instance does: AUTO_TOPUP_RETENTION_INTERVAL_SECONDS
0 and no `auto-topup prune` either)."""

from __future__ import annotations

import time

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from service.adapters.postgres.retention import oldest_prunable
from service.service_layer.ports import Clock
from service.service_layer.retention import TARGETS, PruneReport, Retention


class RetentionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pruned = Counter(
            "auto_topup_retention_rows_pruned",
            "Rows deleted by this instance's pruner, by table (daily_keys, outbox_events, "
            "outbox_dead_letters, decision_summary, charge_audit, counter_audit, "
            "customer_history, open_invoices).",
            ["table"],
            registry=registry,
        )
        self.last_run = Gauge(
            "auto_topup_retention_last_run_timestamp_seconds",
            "When this instance's pruner last finished a run (Unix time; 0: not yet, or another "
            "instance held the pruner's lock every time).",
            registry=registry,
        )
        self.oldest_prunable_age = Gauge(
            "auto_topup_retention_oldest_prunable_age_seconds",
            "How long the oldest row past its table's retention horizon has been waiting to be "
            "pruned, by table (0: none; read from the database at scrape time).",
            ["table"],
            registry=registry,
        )
        for target in TARGETS:
            self.pruned.labels(target)
            self.oldest_prunable_age.labels(target)
        self._watched: tuple[asyncpg.Pool, Clock, Retention] | None = None

    def batch_pruned(self, target: str, rows: int) -> None:
        self.pruned.labels(target).inc(rows)

    def run_finished(self, report: PruneReport) -> None:
        self.last_run.set(time.time())  # wall time, for Prometheus' time()

    def watch(self, pool: asyncpg.Pool, clock: Clock, retention: Retention) -> None:
        """Read the backlog gauge from this database at every scrape."""
        self._watched = (pool, clock, retention)

    async def refresh(self) -> None:
        if self._watched is None:
            return
        pool, clock, retention = self._watched
        now = clock()
        oldest = await oldest_prunable(pool, retention.horizons(now))
        for target in TARGETS:
            self.oldest_prunable_age.labels(target).set(
                retention.overdue_seconds(target, oldest[target], now)
            )
