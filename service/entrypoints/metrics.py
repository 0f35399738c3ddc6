"""Prometheus metrics: what operators watch and alert on (see docs/operating.md).

A registry of its own (not the process-global one), so that tests can build as many as they
like; it carries the standard process, platform and GC collectors too (`process_*`,
`python_info`, `python_gc_*`) and `auto_topup_build_info`. Counters move when a batch is
committed; gauges that cost a query (outbox backlog, consumer lag) are read when Prometheus
scrapes, so nothing runs when nobody looks.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from service import __version__
from service.adapters.postgres.charge_admin import charge_gauges
from service.domain.reasons import DECISION_OUTCOMES, RecordOutcome, StripeCallOutcome
from service.entrypoints.metrics_retention import RetentionMetrics
from service.service_layer.handlers import BatchReport
from service.service_layer.payments import (
    ChargeRequest,
    ChargeResult,
    PaymentGateway,
    TransientChargeError,
)
from service.service_layer.ports import Clock, Tally

# Per-batch durations and event ages (seconds): from a few milliseconds to minutes of lag.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STRIPE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._add_runtime(self.registry)
        self._add_counters(self.registry)
        self._add_histograms(self.registry)
        self._add_gauges(self.registry)
        self._charges: tuple[asyncpg.Pool, Clock] | None = None
        self.retention = RetentionMetrics(self.registry)  # pruning (service_layer/retention.py)

    def _add_runtime(self, r: CollectorRegistry) -> None:
        """The standard collectors (CPU, memory, file descriptors, the interpreter, GC) and
        the build: what the default registry would have had, in ours."""
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "auto_topup_build_info",
            "Always 1: the version of auto-topup and of Python this instance runs.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)

    def _add_counters(self, r: CollectorRegistry) -> None:
        self.events_consumed = Counter(
            "auto_topup_events_consumed",
            "Input records consumed and committed, by topic and outcome "
            "(applied, stale, dead_lettered; invoice-status-changed: closed, noted, "
            "unknown_invoice).",
            ["topic", "outcome"],
            registry=r,
        )
        self.decisions = Counter(
            "auto_topup_decisions",
            "Top-up decisions by payment method, outcome (triggered, failed, suppressed, "
            "blocked) and reason.",
            ["method", "outcome", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "auto_topup_dead_letters", "Records dead-lettered, by reason.", ["reason"], registry=r
        )
        self.invoice_overdue_notices = Counter(
            "auto_topup_invoice_overdue_notices",
            "invoice_overdue notices queued by this instance's overdue-notice worker.",
            registry=r,
        )
        self.stripe_results = Counter(
            "auto_topup_stripe_charges",
            "Stripe charge attempts by result (succeeded, failed, pending, error).",
            ["result"],
            registry=r,
        )

    def _add_histograms(self, r: CollectorRegistry) -> None:
        self.stripe_call = Histogram(
            "auto_topup_stripe_call_seconds",
            "Duration of calls to Stripe, by outcome.",
            ["outcome"],
            buckets=_STRIPE_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "auto_topup_batch_seconds",
            "Time to apply and commit one consumed batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_age = Histogram(
            "auto_topup_event_age_seconds",
            "Age of the oldest record of each batch when the batch is committed (from the "
            "record's Kafka timestamp): the processing latency an event sees, at worst.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def _add_gauges(self, r: CollectorRegistry) -> None:
        self.outbox_backlog = Gauge(
            "auto_topup_outbox_backlog",
            "Outbox records committed but not yet published, set-aside ones apart (read at "
            "scrape time).",
            registry=r,
        )
        self.outbox_set_aside = Gauge(
            "auto_topup_outbox_set_aside",
            "Outbox records Kafka refused for good, set aside until an operator retries them "
            "(`auto-topup outbox list`; read at scrape time).",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "auto_topup_consumer_lag",
            "Records in the partition after this instance's position (read at scrape time).",
            ["topic", "partition"],
            registry=r,
        )
        self.charges_needs_review = Gauge(
            "auto_topup_stripe_charges_needs_review",
            "Stripe charges past the idempotency-key horizon that the charger could not "
            "settle, waiting for an operator (`auto-topup charges`; read at scrape time).",
            registry=r,
        )
        self.oldest_unresolved_charge = Gauge(
            "auto_topup_stripe_oldest_unresolved_charge_age_seconds",
            "Age since its claim of the oldest Stripe charge still in the charger's hands "
            "(claimed or charging; 0 when none; read at scrape time).",
            registry=r,
        )

    def batch_committed(
        self, report: BatchReport, seconds: float, oldest_age_seconds: float | None
    ) -> None:
        self.batch_seconds.observe(seconds)
        if oldest_age_seconds is not None:
            self.event_age.observe(max(oldest_age_seconds, 0.0))
        for key, count in report.counts.items():
            if key.tally is Tally.DEAD_LETTER:
                self.dead_letters.labels(key.code).inc(count)
            elif key.tally is Tally.CONSUMED:
                self.events_consumed.labels(key.topic, key.code).inc(count)
        for entry in report.log:
            if entry.outcome == RecordOutcome.DEAD_LETTERED:
                self.events_consumed.labels(entry.topic, RecordOutcome.DEAD_LETTERED).inc()
            elif entry.outcome in DECISION_OUTCOMES:
                self.decisions.labels(
                    entry.method or "none", entry.outcome, entry.reason or ""
                ).inc()

    def watch_charges(self, pool: asyncpg.Pool, clock: Clock) -> None:
        """Read the Stripe charge gauges from this database at every scrape."""
        self._charges = (pool, clock)

    async def refresh_charges(self) -> None:
        if self._charges is None:
            return
        pool, clock = self._charges
        gauges = await charge_gauges(pool)
        self.charges_needs_review.set(gauges.needs_review)
        oldest = gauges.oldest_unresolved
        age = 0.0 if oldest is None else (clock() - oldest).total_seconds()
        self.oldest_unresolved_charge.set(max(age, 0.0))

    async def render(self, refresh: Callable[[], Awaitable[None]]) -> bytes:
        await refresh()
        await self.refresh_charges()
        await self.retention.refresh()
        return generate_latest(self.registry)


class TimedGateway:
    """The payment port, with every call timed and counted."""

    def __init__(self, inner: PaymentGateway, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        return await self._timed(lambda: self._inner.charge(request))

    async def retrieve(self, payment_intent_id: str) -> ChargeResult:
        return await self._timed(lambda: self._inner.retrieve(payment_intent_id))

    async def find(self, daily_key: str) -> list[ChargeResult]:
        """Timed under outcome `search` (`search_error` when it failed); not a charge attempt,
        so not counted in auto_topup_stripe_charges_total."""
        started = time.perf_counter()
        try:
            found = await self._inner.find(daily_key)
        except TransientChargeError:
            elapsed = time.perf_counter() - started
            self._metrics.stripe_call.labels(StripeCallOutcome.SEARCH_ERROR).observe(elapsed)
            raise
        elapsed = time.perf_counter() - started
        self._metrics.stripe_call.labels(StripeCallOutcome.SEARCH).observe(elapsed)
        return found

    async def _timed(self, call: Callable[[], Awaitable[ChargeResult]]) -> ChargeResult:
        started = time.perf_counter()
        try:
            result = await call()
        except TransientChargeError:
            self._observe(StripeCallOutcome.ERROR, started)
            raise
        self._observe(StripeCallOutcome(result.status), started)
        return result

    def _observe(self, outcome: StripeCallOutcome, started: float) -> None:
        self._metrics.stripe_call.labels(outcome).observe(time.perf_counter() - started)
        self._metrics.stripe_results.labels(outcome).inc()
