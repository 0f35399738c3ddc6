"""`auto-topup replay`: applies the input topics again over a time window.

Live, every batch goes through the service's own BatchHandler, PgUnitOfWork and BatchProcessor,
and an in-process OutboxRelay publishes what they queue: a replay is exactly as safe as the
service (row locks, daily keys, staleness), so replaying what was already applied changes
nothing and publishes nothing new. With --dry-run the same handler runs on an in-memory unit of
work that reads wallets from PostgreSQL (plain SELECTs, on a read-only connection) and keeps
every change in memory: nothing is written to PostgreSQL and nothing is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import asyncpg
import typer
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.adapters.kafka.relay import OutboxRelay
from service.adapters.kafka.topics import partitions_of
from service.adapters.memory import MemoryDatabase, WalletLoader
from service.adapters.postgres.errors import is_transient
from service.adapters.postgres.migrate import migration_files
from service.adapters.postgres.sql import q
from service.adapters.postgres.store import PgUnitOfWork, wallet_from_row
from service.config import Settings
from service.domain.model import Wallet
from service.entrypoints import logs
from service.entrypoints.cli_support import confirmed, parse_time
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord, UnitOfWorkFactory
from service.service_layer.processor import BatchProcessor, Stopped
from service.service_layer.replay import (
    REPORT_FORMATS,
    OutboxTap,
    ReplayRow,
    Summary,
    by_customer,
    rows_of,
    write_report,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_FAILED = 1  # Kafka or PostgreSQL unreachable, a missing topic, an unmigrated database
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM: what was applied is committed; --group goes on


class ReplayError(Exception):
    """Stops the replay with one line for the operator (exit code 1)."""


def default_group(settings: Settings, now: datetime) -> str:
    return f"{settings.consumer_group}-replay-{now.astimezone(UTC):%Y%m%dT%H%M%S}"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass
class Window:
    """Where each partition starts and stops (stop excluded)."""

    start: dict[TopicPartition, int]
    stop: dict[TopicPartition, int]
    resumed: int = 0  # partitions that go on from the group's committed offset

    @property
    def total(self) -> int:
        return sum(self.stop[tp] - self.start[tp] for tp in self.start)


def _tp_key(tp: TopicPartition) -> tuple[str, int]:
    return (tp.topic, tp.partition)


async def plan_window(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    since: datetime,
    until: datetime | None,
    resume: bool,
) -> Window:
    """Offsets by timestamp: a partition with no record at or after `since` starts at its end;
    without `until`, every partition stops at the end offset it has now."""
    ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
    found = await consumer.offsets_for_times({tp: _ms(since) for tp in partitions})
    start = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}
    stop = dict(ends)
    if until is not None:
        found = await consumer.offsets_for_times({tp: _ms(until) for tp in partitions})
        stop = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}
    start = {tp: min(start[tp], stop[tp]) for tp in partitions}
    window = Window(start, stop)
    if resume:  # a replay group that committed progress goes on from there
        consumer.assign(list(partitions))
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is not None and start[tp] < committed <= stop[tp]:
                window.start[tp] = committed
                window.resumed += 1
    return window


async def bounded(what: str, wait: float, step: Callable[[], Awaitable[T]]) -> T:
    """The service's start-up wait (until_it_works), but giving up after `wait` seconds."""
    from service.bootstrap import until_it_works

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
        raise ReplayError(f"{what} is unreachable (gave up after {wait:g}s{why})") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
        raise ReplayError(f"{what}: {_why(exc)}") from None
    finally:
        kafka_log.setLevel(level)


def _why(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


class _QuietWaits(logging.Filter):
    """The bounded wait ends in one line; the service's 'waiting for ...' warnings are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("waiting for")


def pg_loader(pool: asyncpg.Pool) -> WalletLoader:
    """Reads wallets and their daily keys with plain SELECTs (no lock, no write)."""

    async def load(customer_ids: Sequence[str], since: date) -> dict[str, Wallet]:
        rows = await pool.fetch(q("read_wallets"), list(customer_ids), since)
        return {r["customer_id"]: wallet_from_row(r, frozenset(r["taken_dates"])) for r in rows}

    return load


async def read_only_pool(settings: Settings) -> asyncpg.Pool:
    """A small pool whose transactions PostgreSQL itself refuses to let write."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.dsn,
        min_size=1,
        max_size=2,
        timeout=10,
        server_settings={"default_transaction_read_only": "on"},
    )
    try:
        try:
            done = {r["version"] for r in await pool.fetch(q("applied_migrations"))}
        except asyncpg.UndefinedTableError:
            done = set()
    except BaseException:
        await pool.close()
        raise
    pending = [version for version, _ in migration_files() if version not in done]
    if pending:
        await pool.close()
        raise ReplayError(
            f"the database lacks migrations {', '.join(pending)}; a dry run does not write: "
            "run `auto-topup migrate` first"
        )
    return pool


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
    def __init__(self, settings: Settings, options: Options) -> None:
        self.settings = settings
        self.options = options
        self.outcome = Outcome()
        self._stopping = asyncio.Event()
        self._processor: BatchProcessor | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._processor is not None:
            self._processor.stop()

    async def run(self) -> Outcome:
        # The service's own start-up pieces (imported here: they are slow to import, and every
        # other command would pay for them).
        from service.bootstrap import prepare_database, prepare_kafka, tracer

        s, o = self.settings, self.options
        async with contextlib.AsyncExitStack() as stack:
            consumer = await bounded("Kafka", o.wait, self._start_consumer)
            stack.push_async_callback(consumer.stop)
            try:
                partitions = await bounded(
                    "Kafka",
                    o.wait,
                    lambda: partitions_of(s.kafka_bootstrap_servers, s.topics.inputs),
                )
            except LookupError as exc:
                raise ReplayError(str(exc)) from None
            window = await bounded(
                "Kafka",
                o.wait,
                lambda: plan_window(consumer, partitions, o.since, o.until, o.resume),
            )
            self.outcome.window = window
            relay: OutboxRelay | None = None
            if o.dry_run:
                pool = await bounded("PostgreSQL", o.wait, lambda: read_only_pool(s))
                stack.push_async_callback(pool.close)
                factory: UnitOfWorkFactory = MemoryDatabase(pg_loader(pool)).unit_of_work
            else:
                pool = await bounded("PostgreSQL", o.wait, lambda: prepare_database(s))
                stack.push_async_callback(pool.close)
                producer = await bounded("Kafka", o.wait, lambda: prepare_kafka(s))
                relay = OutboxRelay(pool, producer)
                stack.push_async_callback(relay.close)
                relay.start()
                stack.push_async_callback(self._drain, relay, pool)

                def pg_uow() -> PgUnitOfWork:
                    return PgUnitOfWork(pool)

                factory = pg_uow
            tap = OutboxTap(factory)
            # Live decisions are traced like the service's (when configured); a dry run's are not
            # decisions that happened.
            tracing = None if o.dry_run else tracer(s)
            if tracing is not None:
                stack.callback(tracing.close)
            handler = BatchHandler(tap, s.clock(), s.policy, s.topics, tracing)
            self._processor = BatchProcessor(handler, is_transient)
            await self._consume(consumer, window, tap, relay)
        return self.outcome

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id="auto-topup-replay",
            # A dry run leaves no trace on the broker either: no group, no commits.
            group_id=None if self.options.dry_run else self.options.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a start offset already deleted: from the oldest kept
            request_timeout_ms=15000,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _drain(self, relay: OutboxRelay, pool: asyncpg.Pool) -> None:
        """Publishes every committed outbox row before the command exits."""
        await relay.stop(timeout=self.settings.shutdown_timeout_seconds)
        self.outcome.published = relay.published
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.outcome.unpublished = int(await pool.fetchval(q("outbox_backlog")))

    async def _consume(
        self,
        consumer: AIOKafkaConsumer,
        window: Window,
        tap: OutboxTap,
        relay: OutboxRelay | None,
    ) -> None:
        assert self._processor is not None
        batch_size = self.settings.batch_max_records
        merge = TimeMerge(window, high_water=max(batch_size, 500))
        # Every partition of the window is assigned, so that the group's progress covers them
        # all; only those whose buffer is short are fetched from.
        everything = sorted(window.start, key=_tp_key)
        consumer.assign(everything)
        for tp in everything:
            consumer.seek(tp, window.start[tp])
        committed: dict[TopicPartition, int | None] = dict.fromkeys(everything)
        commit = not self.options.dry_run
        with _progress() as progress:
            task = progress.add_task("replay", total=window.total)
            while not merge.done() and not self._stopping.is_set():
                wanted = merge.wanted()
                consumer.pause(*(tp for tp in everything if tp not in wanted))
                consumer.resume(*wanted)
                if wanted:
                    fetched: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
                        *wanted, timeout_ms=200, max_records=batch_size
                    )
                    for tp in wanted:
                        merge.add(tp, fetched.get(tp, ()), await consumer.position(tp))
                records = merge.take(batch_size)
                if records:
                    try:
                        report = await self._processor.process(records)
                    except Stopped:
                        break  # nothing of this batch was committed; its offsets neither
                    merge.applied(records)
                    rows = rows_of(report.log, records, tap.take(), self.settings.topics)
                    if self.options.report is not None:  # kept only for the report: a long
                        self.outcome.rows += rows  # replay without one runs in flat memory
                    self.outcome.summary.add(records, rows)
                    self.outcome.summary.stripe_claims += report.stripe_claims
                    if relay is not None and report.outbox_rows:
                        relay.wake()
                if commit and records:
                    await self._commit(consumer, merge.applied_to(), committed)
                self.outcome.done = merge.done_count()
                progress.update(task, completed=self.outcome.done)
        if commit:
            await self._commit(consumer, merge.applied_to(), committed, last=True)
        self.outcome.interrupted = not merge.done()

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        positions: dict[TopicPartition, int],
        committed: dict[TopicPartition, int | None],
        *,
        last: bool = False,
    ) -> None:
        """The group's progress, after each batch; a failed commit is retried with the next
        (and the last one a few times: it is what a rerun with --group goes on from)."""
        moved = {tp: at for tp, at in positions.items() if at != committed[tp]}
        for attempt in range(5 if last else 1):
            if not moved:
                return
            try:
                await consumer.commit(moved)
            except KafkaError as exc:
                log.warning("could not commit the replay's progress (%s)", exc)
                await asyncio.sleep(0.5 * (attempt + 1) if last else 0)
                continue
            committed.update(moved)
            return


class TimeMerge:
    """The window's records, all partitions of both topics merged by broker timestamp.

    A replay reads a backlog: left to the fetcher, one partition's thousands of records may come
    before another's, and settings could be applied after the balances that followed them. The
    merge gives out a record only once every partition that still has records in the window
    has one buffered (a partition that reached its stop offset holds nothing up), and the
    earliest of their heads goes first; each partition keeps its own order. Ties go by topic
    and partition. A partition with `high_water` records buffered is not fetched from until
    they are given out, which bounds the memory.
    """

    def __init__(self, window: Window, high_water: int) -> None:
        self._stop = window.stop
        self._start = window.start
        self._high_water = high_water
        self._order = sorted(window.start, key=_tp_key)
        self._buffers: dict[TopicPartition, deque[ConsumerRecord]] = {
            tp: deque() for tp in self._order
        }
        self._fetched_to = dict(window.start)  # next offset to fetch, at most the stop offset
        self._given_to = dict(window.start)  # next offset not given out yet
        self._applied_to = dict(window.start)  # next offset not applied yet

    def _fetching(self, tp: TopicPartition) -> bool:
        return bool(self._fetched_to[tp] < self._stop[tp])

    def wanted(self) -> list[TopicPartition]:
        """The partitions to fetch from now."""
        return [
            tp
            for tp in self._order
            if self._fetching(tp) and len(self._buffers[tp]) < self._high_water
        ]

    def add(self, tp: TopicPartition, records: Iterable[ConsumerRecord], position: int) -> None:
        """What one fetch gave for `tp`, and the consumer's position after it."""
        stop = self._stop[tp]
        self._buffers[tp].extend(r for r in records if r.offset < stop)
        self._fetched_to[tp] = max(self._fetched_to[tp], min(position, stop))

    def take(self, limit: int) -> list[InputRecord]:
        """Up to `limit` records in time order; fewer (or none) while a partition that still
        has records in the window has none buffered."""
        taken: list[InputRecord] = []
        while len(taken) < limit:
            heads: list[tuple[int, int, TopicPartition]] = []
            for rank, tp in enumerate(self._order):
                buffer = self._buffers[tp]
                if buffer:
                    heads.append((buffer[0].timestamp, rank, tp))
                elif self._fetching(tp):
                    return taken  # its next record may be the earliest: wait for it
            if not heads:
                return taken
            tp = min(heads)[2]
            r = self._buffers[tp].popleft()
            self._given_to[tp] = r.offset + 1
            taken.append(
                InputRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
            )
        return taken

    def applied(self, records: Iterable[InputRecord]) -> None:
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            self._applied_to[tp] = max(self._applied_to[tp], r.offset + 1)

    def applied_to(self) -> dict[TopicPartition, int]:
        """Where each partition's applied records end: the offsets to commit.

        A partition whose every record in the window was applied is at its stop offset, even
        if the offsets before it hold no record (a gap is skipped by the fetcher)."""
        return {
            tp: self._stop[tp]
            if not self._fetching(tp) and not self._buffers[tp] and at == self._given_to[tp]
            else at
            for tp, at in self._applied_to.items()
        }

    def done_count(self) -> int:
        return sum(at - self._start[tp] for tp, at in self.applied_to().items())

    def done(self) -> bool:
        return all(
            not self._fetching(tp)
            and not self._buffers[tp]
            and self._applied_to[tp] == self._given_to[tp]
            for tp in self._order
        )


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _describe(options: Options, outcome: Outcome, settings: Settings) -> list[str]:
    o = options
    lines = []
    if o.dry_run:
        lines.append("dry run: nothing was written to PostgreSQL and nothing was published")
    until = o.until.isoformat() if o.until else "the end offsets at start"
    lines.append(f"window: from {o.since.isoformat()} to {until}")
    if not o.dry_run:
        lines.append(f"consumer group: {o.group} (progress committed after each batch)")
        if outcome.window and outcome.window.resumed:
            lines.append(
                f"  resumed from the group's committed offsets on "
                f"{outcome.window.resumed} partitions"
            )
    lines += outcome.summary.lines()
    out = outcome.summary.outputs
    events = {t: n for t, n in out.items() if t != settings.topics.dead_letter}
    listed = ", ".join(f"{t}: {n}" for t, n in sorted(events.items()))
    lines.append(
        ("would publish: " if o.dry_run else "decided: ")
        + _count(sum(events.values()), "output event")
        + (f" ({listed})" if listed else "")
        + ", "
        + _count(out.get(settings.topics.dead_letter, 0), "dead letter")
    )
    if outcome.summary.stripe_claims:
        lines.append(
            f"stripe: {_count(outcome.summary.stripe_claims, 'charge')} "
            + ("would be claimed" if o.dry_run else "claimed; the service's charger makes them")
        )
    if not o.dry_run:
        lines.append(
            f"published: {_count(outcome.published, 'record')} (a record already in the "
            "outbox, from the service or an earlier replay, is not published again)"
        )
        if outcome.unpublished:
            lines.append(
                f"outbox: {_count(outcome.unpublished, 'record')} not published yet "
                "(the service publishes them)"
            )
    return lines


def replay(
    since: Annotated[
        str,
        typer.Option(
            "--from", metavar="TIME", help="Replay records from this time (RFC 3339, with offset)."
        ),
    ],
    until: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="TIME",
            help="Stop before the records of this time (default: the topics' ends at start).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Decide in memory: write nothing to PostgreSQL, publish nothing."
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="PATH", help="Write every decision to PATH (.csv/.json)."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            metavar="NAME",
            help="Consumer group (default: <AUTO_TOPUP_CONSUMER_GROUP>-replay-<now>); "
            "a group that committed progress goes on from there.",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0.1, metavar="SECONDS", help="How long to wait for Kafka and PostgreSQL."
        ),
    ] = 30.0,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Do not ask on a terminal before a live replay (for scripts)."),
    ] = False,
) -> None:
    """Apply the input topics again over a time window, as safely as the service does."""
    start = parse_time(since, "--from")
    end = parse_time(until, "--to") if until is not None else None
    if end is not None and end < start:
        raise typer.BadParameter(f"{until} is before --from {since}", param_hint="--to")
    if report is not None and report.suffix.lower() not in REPORT_FORMATS:
        raise typer.BadParameter("the report must end in .csv or .json", param_hint="--report")
    if report is not None and not report.absolute().parent.is_dir():
        raise typer.BadParameter(f"no folder {report.parent} for the report", param_hint="--report")
    from service.entrypoints.cli import load_settings

    settings = load_settings()
    if not dry_run and not confirmed(
        f"Replay live from {start.isoformat()}: decisions are written to PostgreSQL and "
        "published (each daily key still decides once). Go on?",
        yes,
    ):
        typer.echo("replay: not started (nothing was done)", err=True)
        raise typer.Exit(1)
    logs.configure("DEBUG" if settings.log_level == "DEBUG" else "WARNING")
    logging.getLogger("auto_topup").addFilter(_QuietWaits())
    options = Options(
        start,
        end,
        dry_run,
        report,
        group or default_group(settings, settings.clock()()),
        resume=group is not None and not dry_run,
        wait=wait,
    )
    code = asyncio.run(_main(settings, options))
    raise typer.Exit(code)


async def _main(settings: Settings, options: Options) -> int:
    job = Replay(settings, options)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, job.stop)
    try:
        outcome = await job.run()
    except ReplayError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_FAILED
    for line in _describe(options, outcome, settings):
        typer.echo(line)
    if options.report is not None:
        rows = by_customer(outcome.rows)
        try:
            write_report(options.report, rows)
        except OSError as exc:
            typer.echo(f"error: cannot write the report: {exc}", err=True)
            return EXIT_FAILED
        typer.echo(f"report: {options.report} ({len(rows)} rows)")
    if outcome.interrupted:
        total = outcome.window.total if outcome.window else 0
        typer.echo(
            f"interrupted after {outcome.done} of {total} records"
            + ("" if options.dry_run else f"; rerun with --group {options.group} to go on"),
            err=True,
        )
        return EXIT_INTERRUPTED
    return 0
