"""Wires configuration, adapters and handlers into a runnable application."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber as KafkaSubscriber

from service.adapters.kafka.relay import OutboxRelay, make_producer, topic_configs, topic_restorer
from service.adapters.kafka.topics import NotCoPartitioned, check_co_partitioned, ensure_topics
from service.adapters.postgres.charges import PgChargeStore
from service.adapters.postgres.errors import drop_read_only, is_misconfiguration, is_transient
from service.adapters.postgres.migrate import migrate
from service.adapters.postgres.outbox_admin import set_aside_count
from service.adapters.postgres.retention import connect_retention_store
from service.adapters.postgres.sql import q
from service.adapters.postgres.store import PgUnitOfWork
from service.adapters.stripe_gateway import StripeGateway
from service.config import Settings
from service.entrypoints.consumer import subscribe
from service.entrypoints.gc_policy import GcPolicy
from service.entrypoints.http import HttpServer, Probes
from service.entrypoints.metrics import Metrics, TimedGateway
from service.entrypoints.runtime_stats import GcPauses, rss_kb
from service.service_layer.alignment import Alignment
from service.service_layer.charger import Charger
from service.service_layer.handlers import BatchHandler, BatchReport
from service.service_layer.processor import BatchProcessor
from service.service_layer.retention import Pruner, Retention

if TYPE_CHECKING:
    from service.adapters.tracing import OtelTracer

log = logging.getLogger("auto_topup")
T = TypeVar("T")

# The exit code of `auto-topup run` when the input topics have different partition counts.
EXIT_NOT_CO_PARTITIONED = 3


def tracer(settings: Settings) -> OtelTracer | None:
    if not settings.tracing:
        return None
    try:
        from service.adapters.tracing import otel_tracer
    except ImportError as exc:
        raise SystemExit(
            f"AUTO_TOPUP_TRACING=true needs OpenTelemetry ({exc}): "
            "pip install 'auto-topup[tracing]'"
        ) from None
    return otel_tracer(settings.tracing_exporter)


async def until_it_works(what: str, step: Callable[[], Awaitable[T]]) -> T:
    """Start-up waits for its dependencies, saying so, instead of crashing in a loop."""
    tries = 0
    while True:
        tries += 1
        try:
            return await step()
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            KafkaError,
        ) as exc:
            if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) and (
                is_misconfiguration(exc) or not is_transient(exc)
            ):
                # A wrong password or database, a DSN asyncpg refuses, a failing migration: no
                # wait fixes them (the command prints one line: errors.problem_line).
                raise
            log.warning("waiting for %s (%s: %s)", what, type(exc).__name__, exc)
            await asyncio.sleep(min(0.5 * tries, 5.0))


async def prepare_database(settings: Settings) -> asyncpg.Pool:
    conn = await asyncpg.connect(settings.dsn, timeout=10)
    try:
        applied = await migrate(conn)
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
    finally:
        await conn.close()
    # drop_read_only: a connection to a primary turned read-only (a failover) is not reused.
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.dsn, min_size=1, max_size=settings.db_pool_size, reset=drop_read_only
    )
    return pool


async def prepare_kafka(settings: Settings) -> AIOKafkaProducer:
    created = await ensure_topics(
        settings.kafka_bootstrap_servers,
        settings.topics.all,
        settings.topic_partitions,
        settings.topic_replication_factor,
        co_partitioned=settings.topics.inputs,
        topic_configs=topic_configs(settings),
    )
    if created:
        log.info("created missing topics: %s", ", ".join(created))
    await check_co_partitioned(settings.kafka_bootstrap_servers, settings.topics.inputs)
    producer = make_producer(settings.kafka_bootstrap_servers)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


@dataclass
class Service:
    """The running pieces, for the lifecycle hooks and for tests."""

    settings: Settings
    broker: KafkaBroker
    app: FastStream
    pool: asyncpg.Pool | None = None
    relay: OutboxRelay | None = None
    charger: Charger | None = None
    pruner: Pruner | None = None
    processor: BatchProcessor | None = None
    subscriber: KafkaSubscriber | None = None
    metrics: Metrics | None = None
    http: HttpServer | None = None
    stopping: bool = False
    gc_task: asyncio.Task[None] | None = None
    exit_code: int = 0

    async def refresh_gauges(self) -> None:
        """What /metrics reads at scrape time: the outbox backlog and the consumer lag."""
        assert self.metrics is not None
        if self.pool is not None:
            backlog = await self.pool.fetchval(q("outbox_backlog"), timeout=2)
            self.metrics.outbox_backlog.set(backlog)
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
        await self.pool.fetchval("SELECT 1", timeout=2)
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


def build(settings: Settings) -> Service:
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        graceful_timeout=settings.shutdown_timeout_seconds,
        allow_auto_create_topics=False,
        logger=logging.getLogger("auto_topup.kafka"),
    )
    app = FastStream(broker, logger=logging.getLogger("auto_topup.app"))
    service = Service(settings, broker, app)
    metrics = service.metrics = Metrics()

    # The handler needs the pool, which exists only after start-up: bind lazily.
    def uow() -> PgUnitOfWork:
        assert service.pool is not None
        return PgUnitOfWork(service.pool)

    stripe_key = settings.stripe_api_key
    if stripe_key is None:
        raise ValueError("STRIPE_API_KEY is required to run the service")
    tracing = tracer(settings)
    clock = settings.clock()  # every instant the service decides with (tests shift it)
    if settings.clock_offset_seconds:
        log.warning(
            "AUTO_TOPUP_CLOCK_OFFSET_SECONDS=%s: the service's clock reads %s",
            settings.clock_offset_seconds,
            clock().isoformat(),
        )
    # Due records wait for the other input topic (contract v2); 0 ms: they never wait.
    alignment = (
        Alignment(
            settings.topics.wallet_balance_changed,
            settings.topics.settings_updated,
            settings.input_align_ms / 1000,
            time.monotonic,
        )
        if settings.input_align_ms > 0
        else None
    )
    handler = BatchHandler(
        uow, clock, settings.policy, settings.topics, tracing, alignment=alignment
    )
    processor = BatchProcessor(handler, is_transient)
    service.processor = processor

    gc_policy = GcPolicy()

    def committed(report: BatchReport, seconds: float, oldest_age: float | None) -> None:
        metrics.batch_committed(report, seconds, oldest_age)
        # Soon, not now: once the consumer has let go of the batch it just committed.
        asyncio.get_running_loop().call_soon(gc_policy.between_batches)
        if report.outbox_rows and service.relay is not None:
            service.relay.wake()
        if report.stripe_claims and service.charger is not None:
            service.charger.wake()

    def fatal(exc: BaseException) -> None:
        log.critical(
            "unhandled failure while applying a batch; stopping without committing "
            "it (it is redelivered on the next start)",
            exc_info=exc,
        )
        service.exit_code = 1
        os.kill(os.getpid(), signal.SIGTERM)

    service.subscriber = subscribe(broker, settings, processor, committed, fatal, alignment)
    probes = Probes(
        ready_checks={
            "postgres": service.postgres_problem,
            "kafka": service.kafka_problem,
            "partitions": service.partitions_problem,
        },
        metrics=lambda: metrics.render(service.refresh_gauges),
    )

    @app.on_startup
    async def start_dependencies() -> None:
        # First, so that /healthz answers (and /readyz says why not) while start-up waits.
        service.http = HttpServer(probes, settings.http_host, settings.http_port)
        await service.http.start()
        service.pool = await until_it_works("PostgreSQL", lambda: prepare_database(settings))
        try:
            producer = await until_it_works("Kafka", lambda: prepare_kafka(settings))
        except NotCoPartitioned as exc:
            # One line, then a clean stop before anything is consumed (README: exit code 3).
            log.critical("refusing to start: %s", exc)
            service.exit_code = EXIT_NOT_CO_PARTITIONED
            app.exit()
            await asyncio.Event().wait()  # the shutdown cancels this start-up
            return
        service.relay = relay = OutboxRelay(
            service.pool, producer, restore_topics=topic_restorer(settings)
        )
        relay.start()
        gateway = TimedGateway(
            StripeGateway(
                stripe_key.get_secret_value(),
                settings.stripe_api_base,
                timeout_seconds=settings.stripe_timeout_seconds,
            ),
            metrics,
        )
        service.charger = Charger(
            PgChargeStore(service.pool),
            gateway,
            clock,
            settings.topics,
            concurrency=settings.stripe_concurrency,
            lease_seconds=settings.stripe_timeout_seconds * 2,
            retry_max_seconds=settings.stripe_retry_max_seconds,
            lookup_after=timedelta(seconds=settings.stripe_lookup_after_seconds),
            key_horizon=timedelta(seconds=settings.stripe_key_horizon_seconds),
            on_published=relay.wake,
        )
        service.charger.start()
        metrics.watch_charges(service.pool, clock)
        # Retention: the backlog gauge always; the pruner every interval (0: by hand only).
        retention = Retention.from_settings(settings)
        metrics.retention.watch(service.pool, clock, retention)
        if settings.retention_interval_seconds > 0:
            service.pruner = Pruner(
                connect_retention_store(settings.dsn),
                retention,
                clock,
                interval=settings.retention_interval_seconds,
                on_batch=metrics.retention.batch_pruned,
                on_run=metrics.retention.run_finished,
            )
            service.pruner.start()

    gc_pauses = GcPauses().install()
    memory: dict[str, int] = {}

    @app.after_startup
    async def started() -> None:
        # What start-up built lives as long as the process: keep it out of every later
        # collection, so that a full collection only walks what batches allocate.
        gc.collect()
        gc.freeze()
        gc_policy.install()
        gc_pauses.reset()  # pauses while serving, not the start-up collection above
        service.gc_task = asyncio.create_task(gc_policy.when_idle(), name="gc-when-idle")
        memory["rss_kb_at_start"] = rss_kb()
        log.info(
            "auto-topup is consuming %s as group %s",
            ", ".join(settings.topics.inputs),
            settings.consumer_group,
        )

    @app.on_shutdown
    async def stop_taking_work() -> None:
        service.stopping = True
        processor.stop()
        if service.gc_task is not None:
            service.gc_task.cancel()

    @app.after_shutdown
    async def flush_and_close() -> None:
        # The charger and the relay share one AUTO_TOPUP_SHUTDOWN_TIMEOUT_SECONDS (the batch in
        # flight had its own): a shutdown takes at most twice that, plus closing connections.
        deadline = time.monotonic() + settings.shutdown_timeout_seconds

        def left() -> float:
            return max(deadline - time.monotonic(), 0.1)

        if service.pruner is not None:  # a second at most: the budget is the charges' and
            await service.pruner.stop(timeout=min(left(), 1.0))  # the outbox's (a batch is atomic)
        if service.charger is not None:
            await service.charger.stop(timeout=left())
        if service.relay is not None:
            await service.relay.stop(timeout=left())
            await service.relay.close()
        if service.pool is not None:
            await service.pool.close()
        if service.http is not None:
            await service.http.stop()
        if tracing is not None:
            tracing.close()
        log.info(
            "runtime stats",
            extra={
                "runtime": {
                    "longest_gc_pause_ms": round(gc_pauses.longest_ms, 3),
                    "gc_collections": gc_pauses.collections,
                    "longest_gc_pause_ms_by_generation": [
                        round(ms, 3) for ms in gc_pauses.longest_ms_by_generation
                    ],
                    "rss_kb_at_start": memory.get("rss_kb_at_start"),
                    "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                }
            },
        )
        log.info("auto-topup stopped")

    return service
