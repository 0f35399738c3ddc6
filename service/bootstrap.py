"""Wires configuration, adapters and handlers into a runnable application."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber as KafkaSubscriber

from service import __version__
from service.adapters.kafka.producer import topic_restorer
from service.adapters.kafka.relay import OutboxRelay
from service.adapters.kafka.security import KafkaRefused, kafka_access
from service.adapters.kafka.topics import NotCoPartitioned, TopicsMissing
from service.adapters.postgres.charges import PgChargeStore
from service.adapters.postgres.connection import Pool, ping
from service.adapters.postgres.errors import is_transient
from service.adapters.postgres.migrate import SchemaBehind
from service.adapters.postgres.outbox_admin import set_aside_count
from service.adapters.postgres.outbox_store import PgOutboxRows
from service.adapters.postgres.read_models import outbox_backlog
from service.adapters.postgres.retention import connect_retention_store
from service.adapters.postgres.store import PgUnitOfWork
from service.adapters.startup import (
    prepare_database,
    prepare_kafka,
    refusal_code,
    tracer,
    until_it_works,
)
from service.adapters.stripe_gateway import StripeGateway
from service.config import Settings
from service.entrypoints.consumer import subscribe
from service.entrypoints.gc_policy import GcPolicy
from service.entrypoints.http import HttpServer, Probes
from service.entrypoints.metrics import Metrics, TimedGateway
from service.entrypoints.overdue import OverdueNotices, overdue_notices
from service.entrypoints.runtime_stats import ApplyTimes, GcPauses, rss_kb, runtime_entry
from service.entrypoints.support_http import support_routes
from service.service_layer.alignment import configured_alignment
from service.service_layer.charger import Charger
from service.service_layer.handlers import BatchHandler, BatchReport
from service.service_layer.ports import Clock
from service.service_layer.processor import BatchProcessor
from service.service_layer.retention import Pruner, Retention

if TYPE_CHECKING:
    from service.adapters.tracing import OtelTracer

log = logging.getLogger("auto_topup")


@dataclass
class Service:
    """The running pieces, for the lifecycle hooks and for tests."""

    settings: Settings
    broker: KafkaBroker
    app: FastStream
    clock: Clock
    pool: Pool | None = None
    relay: OutboxRelay | None = None
    charger: Charger | None = None
    pruner: Pruner | None = None
    overdue: OverdueNotices | None = None
    processor: BatchProcessor | None = None
    subscriber: KafkaSubscriber | None = None
    metrics: Metrics = field(default_factory=Metrics)
    http: HttpServer | None = None
    stopping: bool = False
    gc_task: asyncio.Task[None] | None = None
    exit_code: int = 0
    tracing: OtelTracer | None = None
    gc_policy: GcPolicy = field(default_factory=GcPolicy)
    gc_pauses: GcPauses = field(default_factory=GcPauses)  # installed by build()
    apply_times: ApplyTimes = field(default_factory=ApplyTimes)  # the consumer adds to it
    rss_kb_at_start: int | None = None

    def unit_of_work(self) -> PgUnitOfWork:  # the pool exists only after start-up: bound lazily
        assert self.pool is not None
        return PgUnitOfWork(self.pool)

    # --- what the consumer reports --------------------------------------------------------

    def committed(self, report: BatchReport, seconds: float, oldest_age: float | None) -> None:
        self.metrics.batch_committed(report, seconds, oldest_age)
        # Soon, not now: once the consumer has let go of the batch it just committed.
        asyncio.get_running_loop().call_soon(self.gc_policy.between_batches)
        if report.outbox_rows and self.relay is not None:
            self.relay.wake()
        if report.stripe_claims and self.charger is not None:
            self.charger.wake()

    def fatal(self, exc: BaseException) -> None:
        log.critical(
            "unhandled failure while applying a batch; stopping without committing "
            "it (it is redelivered on the next start)",
            exc_info=exc,
        )
        self.exit_code = 1
        os.kill(os.getpid(), signal.SIGTERM)

    # --- what /metrics and /readyz read ---------------------------------------------------

    async def refresh_gauges(self) -> None:
        """What /metrics reads at scrape time: the outbox backlog and the consumer lag."""
        if self.pool is not None:
            self.metrics.outbox_backlog.set(await outbox_backlog(self.pool, timeout=2))
            self.metrics.outbox_set_aside.set(await set_aside_count(self.pool))
        consumer = self.subscriber.consumer if self.subscriber is not None else None
        self.metrics.consumer_lag.clear()
        if consumer is None:
            return
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:  # nothing fetched yet from this partition
                continue
            position = await asyncio.wait_for(consumer.position(tp), 2)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(end - position, 0)
            )

    async def postgres_problem(self) -> str | None:
        if self.pool is None:
            return "not connected yet"
        await ping(self.pool, timeout=2)
        return None

    async def kafka_problem(self) -> str | None:
        return None if await self.broker.ping(timeout=2) else "the broker does not answer"

    async def partitions_problem(self) -> str | None:
        if self.stopping:
            return "shutting down"
        consumer = self.subscriber.consumer if self.subscriber is not None else None
        if consumer is None or not consumer.assignment():
            return "no partitions assigned (yet, or more instances than partitions)"
        return None

    def probes(self) -> Probes:
        return Probes(
            ready_checks={
                "postgres": self.postgres_problem,
                "kafka": self.kafka_problem,
                "partitions": self.partitions_problem,
            },
            metrics=lambda: self.metrics.render(self.refresh_gauges),
            routes=support_routes(self.settings, lambda: self.pool, self.clock),
        )

    # --- start-up -------------------------------------------------------------------------

    async def start_dependencies(self) -> None:
        """FastStream's on_startup: the HTTP server, PostgreSQL, Kafka, then the workers."""
        settings = self.settings
        # First, so that /healthz answers (and /readyz says why not) while start-up waits.
        self.http = HttpServer(self.probes(), settings.http_host, settings.http_port)
        await self.http.start()
        migrate = settings.migrate_on_start  # false: only check that the schema is current
        try:
            self.pool = await until_it_works(
                "PostgreSQL", lambda: prepare_database(settings, migrate_schema=migrate)
            )
            producer = await until_it_works("Kafka", lambda: prepare_kafka(settings))
        except (SchemaBehind, NotCoPartitioned, TopicsMissing, KafkaRefused) as exc:
            # One line, then a clean stop before anything is consumed (exit code 4, 3, 5 or 2).
            log.critical("refusing to start: %s", exc)
            self.exit_code = refusal_code(exc)
            self.app.exit()
            await asyncio.Event().wait()  # the shutdown cancels this start-up
            return
        self.relay = OutboxRelay(
            PgOutboxRows(self.pool), producer, restore_topics=topic_restorer(settings)
        )
        self.relay.start()
        self._start_charger(self.pool, self.relay)
        self._start_retention(self.pool)
        self.overdue = overdue_notices(settings, self.pool, self.clock, self.metrics, self.relay)

    def _start_charger(self, pool: Pool, relay: OutboxRelay) -> None:
        settings = self.settings
        stripe_key = settings.stripe_api_key
        assert stripe_key is not None  # build() refuses to run without it
        gateway = TimedGateway(
            StripeGateway(
                stripe_key.get_secret_value(),
                settings.stripe_api_base,
                timeout_seconds=settings.stripe_timeout_seconds,
            ),
            self.metrics,
        )
        self.charger = Charger(
            PgChargeStore(pool),
            gateway,
            self.clock,
            settings.topics,
            concurrency=settings.stripe_concurrency,
            lease_seconds=settings.stripe_timeout_seconds * 2,
            retry_max_seconds=settings.stripe_retry_max_seconds,
            lookup_after=timedelta(seconds=settings.stripe_lookup_after_seconds),
            key_horizon=timedelta(seconds=settings.stripe_key_horizon_seconds),
            on_published=relay.wake,
            rails=settings.policy.rails,
            credit_hold=settings.policy.credit_hold,
        )
        self.charger.start()
        self.metrics.watch_charges(pool, self.clock)

    def _start_retention(self, pool: Pool) -> None:
        """The backlog gauge always; the pruner every interval (0: by hand only)."""
        settings = self.settings
        retention = Retention.from_settings(settings)
        self.metrics.retention.watch(pool, self.clock, retention)
        if settings.retention_interval_seconds > 0:
            self.pruner = Pruner(
                connect_retention_store(settings.dsn),
                retention,
                self.clock,
                interval=settings.retention_interval_seconds,
                on_batch=self.metrics.retention.batch_pruned,
                on_run=self.metrics.retention.run_finished,
            )
            self.pruner.start()

    async def started(self) -> None:
        """FastStream's after_startup."""
        # What start-up built lives as long as the process: keep it out of every later
        # collection, so that a full collection only walks what batches allocate.
        gc.collect()
        gc.freeze()
        self.gc_policy.install()
        self.gc_pauses.reset()  # pauses while serving, not the start-up collection above
        self.apply_times.reset()
        self.gc_task = asyncio.create_task(self.gc_policy.when_idle(), name="gc-when-idle")
        self.rss_kb_at_start = rss_kb()
        log.info(
            "auto-topup is consuming %s as group %s (version %s)",
            ", ".join(self.settings.topics.inputs),
            self.settings.consumer_group,
            __version__,
        )

    # --- shutdown -------------------------------------------------------------------------

    async def stop_taking_work(self) -> None:
        """FastStream's on_shutdown."""
        self.stopping = True
        if self.processor is not None:
            self.processor.stop()
        if self.gc_task is not None:
            self.gc_task.cancel()

    async def flush_and_close(self) -> None:
        """FastStream's after_shutdown."""
        # The charger and the relay share one AUTO_TOPUP_SHUTDOWN_TIMEOUT_SECONDS (the batch in
        # flight had its own): a shutdown takes at most twice that, plus closing connections.
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds

        def left() -> float:
            return max(deadline - time.monotonic(), 0.1)

        if self.pruner is not None:  # a second at most: the budget is the charges' and
            await self.pruner.stop(timeout=min(left(), 1.0))  # the outbox's (a batch is atomic)
        if self.overdue is not None:  # one short transaction at most
            await self.overdue.stop(timeout=min(left(), 1.0))
        if self.charger is not None:
            await self.charger.stop(timeout=left())
        if self.relay is not None:
            await self.relay.stop(timeout=left())
            await self.relay.close()
        if self.pool is not None:
            await self.pool.close()
        if self.http is not None:
            await self.http.stop()
        if self.tracing is not None:
            self.tracing.close()
        self._log_runtime_stats()
        log.info("auto-topup stopped")

    def _log_runtime_stats(self) -> None:
        runtime = runtime_entry(self.gc_pauses, self.apply_times, self.rss_kb_at_start)
        log.info("runtime stats", extra={"runtime": runtime})


def _broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=kafka_access(settings).broker_security(),
        acks="all",
        enable_idempotence=True,
        graceful_timeout=settings.shutdown_timeout_seconds,
        allow_auto_create_topics=False,
        logger=logging.getLogger("auto_topup.kafka"),
    )


def _clock(settings: Settings) -> Clock:
    clock = settings.clock()  # every instant the service decides with (tests shift it)
    if settings.clock_offset_seconds:
        log.warning(
            "AUTO_TOPUP_CLOCK_OFFSET_SECONDS=%s: the service's clock reads %s",
            settings.clock_offset_seconds,
            clock().isoformat(),
        )
    return clock


def build(settings: Settings) -> Service:
    broker = _broker(settings)
    app = FastStream(broker, logger=logging.getLogger("auto_topup.app"))
    if settings.stripe_api_key is None:
        raise ValueError("STRIPE_API_KEY is required to run the service")
    tracing = tracer(settings)
    service = Service(settings, broker, app, clock=_clock(settings), tracing=tracing)
    alignment = configured_alignment(settings)
    handler = BatchHandler(
        service.unit_of_work,
        service.clock,
        settings.policy,
        settings.topics,
        service.tracing,
        alignment=alignment,
    )
    service.processor = processor = BatchProcessor(handler, is_transient)
    service.subscriber = subscribe(
        broker,
        settings,
        processor,
        service.committed,
        service.fatal,
        alignment,
        apply_times=service.apply_times,
    )
    app.on_startup(service.start_dependencies)
    app.after_startup(service.started)
    app.on_shutdown(service.stop_taking_work)
    app.after_shutdown(service.flush_and_close)
    service.gc_pauses.install()
    return service
