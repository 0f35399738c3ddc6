"""Start-up steps the service and the replay share: wait for a dependency, migrate and open
the database pool, create the topics (or check that they exist) and start a producer, and the
optional tracer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.adapters.kafka.producer import make_producer, topic_configs
from service.adapters.kafka.security import KafkaRefused, check_access, kafka_access, refusal
from service.adapters.kafka.topics import KafkaTopicAdmin, TopicsMissing
from service.adapters.postgres.errors import drop_read_only, is_misconfiguration, is_transient
from service.adapters.postgres.migrate import SchemaBehind, migrate, pending
from service.config import Settings
from service.domain.reasons import ExitCode

if TYPE_CHECKING:
    from service.adapters.tracing import OtelTracer

log = logging.getLogger("auto_topup")  # the service's own start-up lines
T = TypeVar("T")


class Unreachable(Exception):
    """A bounded wait for a dependency gave up: one line for the operator."""


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
            refused = refusal(exc)
            if refused is not None:  # Kafka refused our credentials or TLS: no wait fixes it
                raise refused from None
            log.warning("waiting for %s (%s: %s)", what, type(exc).__name__, exc)
            await asyncio.sleep(min(0.5 * tries, 5.0))


def _why(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


async def bounded(what: str, wait: float, step: Callable[[], Awaitable[T]]) -> T:
    """until_it_works, but giving up after `wait` seconds (Unreachable)."""
    last: list[BaseException] = []

    async def attempt() -> T:
        try:
            return await step()
        except Exception as exc:
            last[:] = [exc]
            raise

    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # it logs every failed connection attempt
    try:
        return await asyncio.wait_for(until_it_works(what, attempt), wait)
    except TimeoutError:
        why = f"; last error: {_why(last[0])}" if last else ""
        raise Unreachable(f"{what} is unreachable (gave up after {wait:g}s{why})") from None
    except KafkaRefused as exc:
        raise Unreachable(str(exc)) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
        raise Unreachable(f"{what}: {_why(exc)}") from None
    finally:
        kafka_log.setLevel(level)


async def prepare_database(settings: Settings, *, migrate_schema: bool = True) -> asyncpg.Pool:
    """Migrates the database (or, with `migrate_schema` false, raises SchemaBehind when
    migrations are missing), then opens the pool."""
    conn = await asyncpg.connect(settings.dsn, timeout=10)
    try:
        if not migrate_schema and (missing := await pending(conn)):
            raise SchemaBehind(missing)
        applied = await migrate(conn) if migrate_schema else []
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
    finally:
        await conn.close()
    # drop_read_only: a connection to a primary turned read-only (a failover) is not reused.
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.dsn, min_size=1, max_size=settings.db_pool_size, reset=drop_read_only
    )
    return pool


class TopicAdmin(Protocol):
    """What prepare_topics needs of the broker (KafkaTopicAdmin; a fake in the unit tests)."""

    async def create(self, names: Sequence[str], co_partitioned: Sequence[str]) -> list[str]: ...

    async def missing(self, names: Sequence[str]) -> list[str]: ...

    async def check_co_partitioned(self, names: Sequence[str]) -> None: ...


async def prepare_topics(settings: Settings, admin: TopicAdmin) -> None:
    """Creates the missing topics (AUTO_TOPUP_CREATE_TOPICS=true), or creates none and raises
    TopicsMissing naming those missing (false); then NotCoPartitioned if the input topics'
    partition counts differ."""
    topics = settings.topics
    if settings.create_topics:
        created = await admin.create(topics.all, topics.inputs)
        if created:
            log.info("created missing topics: %s", ", ".join(created))
    elif missing := await admin.missing(topics.all):
        raise TopicsMissing(missing)
    await admin.check_co_partitioned(topics.inputs)


async def prepare_kafka(settings: Settings) -> AIOKafkaProducer:
    kafka = kafka_access(settings)
    await check_access(kafka)
    admin = KafkaTopicAdmin(
        kafka,
        settings.topic_partitions,
        settings.topic_replication_factor,
        topic_configs(settings),
    )
    await prepare_topics(settings, admin)
    producer = make_producer(kafka)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


def refusal_code(exc: BaseException) -> ExitCode:
    """The exit code of `run` refusing to start on `exc` (docs/operating.md, exit codes)."""
    if isinstance(exc, SchemaBehind):
        return ExitCode.SCHEMA_BEHIND
    if isinstance(exc, KafkaRefused):
        return ExitCode.MISCONFIGURED  # Kafka refused the credentials or the TLS handshake
    if isinstance(exc, TopicsMissing):
        return ExitCode.TOPICS_MISSING
    return ExitCode.NOT_CO_PARTITIONED  # NotCoPartitioned
