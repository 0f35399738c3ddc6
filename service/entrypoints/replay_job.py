"""The replay itself: the window's records through the service's own handler and processor,
on PostgreSQL (live) or on an in-memory unit of work (--dry-run). cli_replay.py parses the
options and prints the outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from service.adapters.kafka.relay import OutboxRelay
from service.adapters.kafka.security import kafka_access
from service.adapters.kafka.time_merge import TimeMerge
from service.adapters.kafka.topics import TopicsMissing
from service.adapters.kafka.window import Partition, Window, WindowReader
from service.adapters.memory import MemoryDatabase
from service.adapters.postgres.connection import DATABASE_ERRORS, Pool
from service.adapters.postgres.errors import is_transient
from service.adapters.postgres.migrate import SchemaBehind
from service.adapters.postgres.outbox_store import PgOutboxRows
from service.adapters.postgres.read_models import (
    NotMigrated,
    invoices_loader,
    outbox_backlog,
    read_only_pool,
    rejections_loader,
    wallet_loader,
)
from service.adapters.postgres.store import PgUnitOfWork
from service.adapters.startup import bounded, prepare_database, prepare_kafka, tracer
from service.config import Settings
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord, UnitOfWorkFactory
from service.service_layer.processor import BatchProcessor, Stopped
from service.service_layer.replay import OutboxTap, ReplayRow, Summary, rows_of

# Given the window's size, a context whose value is told how many records are done.
ProgressBar = Callable[[int], AbstractContextManager[Callable[[int], None]]]


class ReplayError(Exception):
    """Stops the replay with one line for the operator (exit code 1)."""


def default_group(settings: Settings, now: datetime) -> str:
    return f"{settings.consumer_group}-replay-{now.astimezone(UTC):%Y%m%dT%H%M%S}"


@dataclass
class Options:
    since: datetime
    until: datetime | None
    dry_run: bool
    report: Path | None
    group: str
    resume: bool
    wait: float


@dataclass
class Outcome:
    summary: Summary = field(default_factory=Summary)
    rows: list[ReplayRow] = field(default_factory=list)  # with --report only
    window: Window | None = None
    done: int = 0
    interrupted: bool = False
    published: int = 0  # by this replay's relay
    unpublished: int = 0


class Replay:
    def __init__(self, settings: Settings, options: Options, progress: ProgressBar) -> None:
        self.settings = settings
        self.options = options
        self.outcome = Outcome()
        self._progress = progress
        self._stopping = asyncio.Event()
        self._processor: BatchProcessor | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._processor is not None:
            self._processor.stop()

    async def run(self) -> Outcome:
        async with contextlib.AsyncExitStack() as stack:
            reader = await self._reader(stack)
            window = self.outcome.window = await self._window(reader)
            relay: OutboxRelay | None = None
            if self.options.dry_run:
                factory = await self._in_memory(stack)
            else:
                factory, relay = await self._live(stack)
            tap = OutboxTap(factory)
            # Live decisions are traced like the service's (when configured); a dry run's are not
            # decisions that happened.
            tracing = None if self.options.dry_run else tracer(self.settings)
            if tracing is not None:
                stack.callback(tracing.close)
            s = self.settings
            handler = BatchHandler(tap, s.clock(), s.policy, s.topics, tracing)
            self._processor = BatchProcessor(handler, is_transient)
            await self._consume(reader, window, tap, relay)
        return self.outcome

    async def _reader(self, stack: contextlib.AsyncExitStack) -> WindowReader:
        # A dry run leaves no trace on the broker either: no group, no commits.
        group = None if self.options.dry_run else self.options.group
        kafka = kafka_access(self.settings)
        reader = await bounded(
            "Kafka", self.options.wait, lambda: WindowReader.started(kafka, group)
        )
        stack.push_async_callback(reader.stop)
        return reader

    async def _window(self, reader: WindowReader) -> Window:
        o = self.options
        try:
            partitions = await bounded(
                "Kafka", o.wait, lambda: reader.partitions(self.settings.topics.inputs)
            )
        except LookupError as exc:
            raise ReplayError(str(exc)) from None
        return await bounded(
            "Kafka", o.wait, lambda: reader.plan(partitions, o.since, o.until, o.resume)
        )

    async def _in_memory(self, stack: contextlib.AsyncExitStack) -> UnitOfWorkFactory:
        dsn = self.settings.dsn
        try:
            pool = await bounded("PostgreSQL", self.options.wait, lambda: read_only_pool(dsn))
        except NotMigrated as exc:
            raise ReplayError(str(exc)) from None
        stack.push_async_callback(pool.close)
        return MemoryDatabase(
            wallet_loader(pool), rejections_loader(pool), invoices_loader(pool)
        ).unit_of_work

    async def _live(
        self, stack: contextlib.AsyncExitStack
    ) -> tuple[UnitOfWorkFactory, OutboxRelay]:
        s, wait = self.settings, self.options.wait
        # As `run`: with AUTO_TOPUP_MIGRATE_ON_START=false it applies no migration (the runtime
        # role needs no right to change the schema) and stops if one is missing.
        try:
            pool = await bounded(
                "PostgreSQL",
                wait,
                lambda: prepare_database(s, migrate_schema=s.migrate_on_start),
            )
        except SchemaBehind as exc:
            raise ReplayError(str(exc)) from None
        stack.push_async_callback(pool.close)
        try:  # creates the missing topics, or with AUTO_TOPUP_CREATE_TOPICS=false names them
            producer = await bounded("Kafka", wait, lambda: prepare_kafka(s))
        except TopicsMissing as exc:
            raise ReplayError(str(exc)) from None
        relay = OutboxRelay(PgOutboxRows(pool), producer)
        stack.push_async_callback(relay.close)
        relay.start()
        stack.push_async_callback(self._drain, relay, pool)

        def pg_uow() -> PgUnitOfWork:
            return PgUnitOfWork(pool)

        return pg_uow, relay

    async def _drain(self, relay: OutboxRelay, pool: Pool) -> None:
        """Publishes every committed outbox row before the command exits."""
        await relay.stop(timeout=self.settings.shutdown_timeout_seconds)
        self.outcome.published = relay.published
        with contextlib.suppress(*DATABASE_ERRORS):
            self.outcome.unpublished = await outbox_backlog(pool)

    async def _consume(
        self, reader: WindowReader, window: Window, tap: OutboxTap, relay: OutboxRelay | None
    ) -> None:
        batch_size = self.settings.batch_max_records
        merge = TimeMerge(window, high_water=max(batch_size, 500))
        # Every partition of the window is assigned, so that the group's progress covers them
        # all; only those whose buffer is short are fetched from.
        committed: dict[Partition, int | None] = dict.fromkeys(reader.begin(window))
        commit = not self.options.dry_run
        with self._progress(window.total) as progress:
            while not merge.done() and not self._stopping.is_set():
                for tp, records, position in await reader.fetch(merge.wanted(), batch_size):
                    merge.add(tp, records, position)
                records = merge.take(batch_size)
                if records and not await self._apply(records, merge, tap, relay):
                    break  # nothing of this batch was committed; its offsets neither
                if commit and records:
                    await self._commit(reader, merge, committed)
                self.outcome.done = merge.done_count()
                progress(self.outcome.done)
        if commit:
            await self._commit(reader, merge, committed, last=True)
        self.outcome.interrupted = not merge.done()

    async def _apply(
        self,
        records: list[InputRecord],
        merge: TimeMerge,
        tap: OutboxTap,
        relay: OutboxRelay | None,
    ) -> bool:
        """Applies one batch; False when the processor was stopped before it committed."""
        assert self._processor is not None
        try:
            report = await self._processor.process(records)
        except Stopped:
            return False
        merge.applied(records)
        rows = rows_of(report.log, records, tap.take(), self.settings.topics)
        if self.options.report is not None:  # kept only for the report: a long
            self.outcome.rows += rows  # replay without one runs in flat memory
        self.outcome.summary.add(records, rows)
        self.outcome.summary.stripe_claims += report.stripe_claims
        if relay is not None and report.outbox_rows:
            relay.wake()
        return True

    async def _commit(
        self,
        reader: WindowReader,
        merge: TimeMerge,
        committed: dict[Partition, int | None],
        *,
        last: bool = False,
    ) -> None:
        """The group's progress, after each batch; a failed commit is retried with the next
        (and the last one a few times: it is what a rerun with --group goes on from)."""
        moved = {tp: at for tp, at in merge.applied_to().items() if at != committed[tp]}
        if moved and await reader.commit(moved, tries=5 if last else 1):
            committed.update(moved)
