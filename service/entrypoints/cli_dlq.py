"""`auto-topup dlq`: list the dead letters, and redrive them to their original topic.

Both commands read the dead-letter topic from its beginning to the end offsets taken at start,
with assigned partitions and no consumer group: reading commits nothing and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.contract import messages
from service.entrypoints.cli_support import confirmed, parse_time
from service.entrypoints.cli_support import console as _out
from service.entrypoints.cli_support import settings as _settings

if TYPE_CHECKING:
    from service.config import Settings

T = TypeVar("T")

UNKNOWN = "unknown"  # the reason shown for a record without the dlq_* headers
DLQ_HEADER_PREFIX = "dlq_"
DEFAULT_TIMEOUT = 30.0

dlq = typer.Typer(
    name="dlq",
    help="List the dead letters, and redrive them to their original topic once fixed.",
    no_args_is_help=True,
    add_completion=False,
)


class DlqError(Exception):
    """A failure told to the operator in one line (exit code 1)."""


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, as read (any record: foreign ones too)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    def header(self, name: str) -> str | None:
        """The last header of that name (the service appends its own after the original ones)."""
        for hname, value in reversed(self.headers):
            if hname == name:
                return None if value is None else value.decode("utf-8", "replace")
        return None

    @property
    def reason(self) -> str:
        return self.header(messages.DLQ_REASON) or UNKNOWN

    @property
    def detail(self) -> str | None:
        return self.header(messages.DLQ_DETAIL)

    @property
    def dead_lettered_at(self) -> str | None:
        return self.header(messages.DLQ_AT)

    @property
    def original_topic(self) -> str | None:
        return self.header(messages.DLQ_TOPIC) or None

    @property
    def original_partition(self) -> int | None:
        return _int(self.header(messages.DLQ_PARTITION))

    @property
    def original_offset(self) -> int | None:
        return _int(self.header(messages.DLQ_OFFSET))

    @property
    def original_headers(self) -> tuple[tuple[str, bytes | None], ...]:
        """Every header except the dlq_* ones: what the original record carried."""
        return tuple((n, v) for n, v in self.headers if not n.startswith(DLQ_HEADER_PREFIX))

    @property
    def where(self) -> str:
        return f"{self.partition}@{self.offset}"

    @property
    def original(self) -> str:
        if self.original_topic is None:
            return "-"
        partition = "?" if self.original_partition is None else self.original_partition
        offset = "?" if self.original_offset is None else self.original_offset
        return f"{self.original_topic}[{partition}]@{offset}"

    def identity(self) -> tuple[object, ...]:
        """Two dead letters with the same identity would publish the same record."""
        return (self.original_topic, self.key, self.value, self.original_headers)

    def to_json(self) -> dict[str, Any]:
        key, key_encoding = _encoded(self.key)
        value, value_encoding = _encoded(self.value)
        headers = []
        for name, raw in self.original_headers:
            text, encoding = _encoded(raw)
            headers.append({"name": name, "value": text, "encoding": encoding})
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": _iso_ms(self.timestamp_ms),
            "dead_lettered_at": self.dead_lettered_at,
            "reason": self.reason,
            "detail": self.detail,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "key": key,
            "key_encoding": key_encoding,
            "value": value,
            "value_encoding": value_encoding,
            "headers": headers,
        }


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _encoded(raw: bytes | None) -> tuple[str | None, str | None]:
    """Text when the bytes are UTF-8, else base64; (None, None) for no bytes at all."""
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _iso_ms(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _printable(text: str) -> str:
    """Control characters escaped, so that a value cannot move the cursor or break a row."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def preview(raw: bytes | None, width: int) -> str:
    """Any bytes, shown safely: UTF-8 with replacement characters, escaped, truncated."""
    if raw is None:
        return "(none)"
    return _clip(_printable(raw[: width * 4].decode("utf-8", "replace")), width)


def _when(text: str | None) -> str:
    if text is None:
        return "-"
    try:
        return datetime.fromisoformat(text).isoformat(timespec="seconds")
    except ValueError:
        return _clip(_printable(text), 32)


# --- reading -------------------------------------------------------------------------------


async def _partitions(bootstrap: str, topic: str) -> list[Any]:
    from service.adapters.kafka.topics import partitions_of

    try:
        return await partitions_of(bootstrap, [topic])
    except LookupError:
        raise DlqError(f"topic {topic} does not exist") from None


async def read_dead_letters(bootstrap: str, topic: str, timeout: float) -> list[DeadLetter]:
    """Every record of the topic up to the end offsets taken now, oldest first.

    Assigned partitions, no consumer group, no commits: reading changes nothing. Gives up
    (DlqError) when Kafka does not answer, or reading stalls, for `timeout` seconds.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="auto-topup-dlq",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # records deleted by retention meanwhile: go on
    )
    found: list[DeadLetter] = []
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            partitions = await _partitions(bootstrap, topic)
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, begin[tp])
        pending = {tp for tp in partitions if end[tp] > begin[tp]}
        progress_at = time.monotonic()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                found += [
                    DeadLetter(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        timestamp_ms=r.timestamp,
                        key=r.key,
                        value=r.value,
                        headers=tuple(r.headers),
                    )
                    for r in records
                    if r.offset < end[tp]
                ]
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if batch:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at > timeout:
                raise DlqError(f"reading {topic} made no progress for {timeout:g}s")
    finally:
        await consumer.stop()
    found.sort(key=lambda d: (d.timestamp_ms, d.partition, d.offset))
    return found


# --- redriving -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    publish: list[DeadLetter]
    skipped: list[tuple[DeadLetter, str]]
    duplicates: int


def plan_redrive(selected: Sequence[DeadLetter], inputs: Iterable[str]) -> Plan:
    """What to publish, in the original order; what to skip and why."""
    allowed = tuple(inputs)
    publish: list[DeadLetter] = []
    skipped: list[tuple[DeadLetter, str]] = []
    seen: set[tuple[object, ...]] = set()
    duplicates = 0
    ordered = sorted(
        selected,
        key=lambda d: (
            d.original_topic or "",
            d.original_partition if d.original_partition is not None else -1,
            d.original_offset if d.original_offset is not None else -1,
            d.timestamp_ms,
        ),
    )
    for dead in ordered:
        if dead.original_topic is None:
            skipped.append((dead, f"no {messages.DLQ_TOPIC} header (not a dead letter of ours)"))
        elif dead.original_topic not in allowed:
            skipped.append(
                (
                    dead,
                    f"original topic {dead.original_topic} is not an input topic of the service "
                    f"({', '.join(allowed)})",
                )
            )
        elif dead.key is None and dead.value is None:
            skipped.append((dead, "it has neither key nor value"))
        elif dead.header(messages.DLQ_TRUNCATED) == "true" or (
            dead.header(messages.DLQ_KEY_TRUNCATED) == "true"
        ):
            skipped.append(
                (
                    dead,
                    "it holds only the first 64 KiB of the original (dlq_truncated): "
                    "republish the original from its source",
                )
            )
        elif dead.identity() in seen:
            duplicates += 1  # the same record dead-lettered twice is published once
        else:
            seen.add(dead.identity())
            publish.append(dead)
    return Plan(publish, skipped, duplicates)


async def _missing_topics(bootstrap: str, topics: Iterable[str]) -> set[str]:
    from service.adapters.kafka.topics import partitions_of

    missing = set()
    for topic in set(topics):
        try:
            await partitions_of(bootstrap, [topic])
        except LookupError:
            missing.add(topic)
    return missing


async def publish(
    bootstrap: str, records: Sequence[DeadLetter], timeout: float
) -> list[tuple[DeadLetter, str]]:
    """Publishes each record's key, value and original headers to its original topic, with an
    idempotent producer (acks=all), and waits for every acknowledgement. Returns the failures."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    failed: list[tuple[DeadLetter, str]] = []
    if not records:
        return failed
    async with asyncio.timeout(timeout):
        missing = await _missing_topics(bootstrap, (r.original_topic or "" for r in records))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="auto-topup-dlq",
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        async with asyncio.timeout(timeout):
            await producer.start()
        sent: list[tuple[DeadLetter, asyncio.Future[Any]]] = []
        for dead in records:
            if dead.original_topic in missing:
                failed.append((dead, f"topic {dead.original_topic} does not exist"))
                continue
            try:
                future = await producer.send(
                    dead.original_topic,
                    value=dead.value,
                    key=dead.key,
                    headers=list(dead.original_headers),
                )
            except KafkaError as exc:
                failed.append((dead, _describe(exc)))
                continue
            sent.append((dead, future))
        outcomes = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        for (dead, _), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed.append((dead, _describe(outcome)))
    finally:
        await producer.stop()
    return failed


# --- the commands --------------------------------------------------------------------------


def _warn(text: str) -> None:
    typer.echo(text, err=True)


def _describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc).strip()
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _run(bootstrap: str, timeout: float, work: Callable[[], Awaitable[T]]) -> T:
    """Runs the Kafka work; any failure to reach Kafka is one line and exit code 1."""
    from aiokafka.errors import KafkaError

    # aiokafka logs every failed connection; the error below says it once.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    logging.getLogger("aiokafka").propagate = False

    async def go() -> T:
        return await work()

    try:
        return asyncio.run(go())
    except DlqError as exc:
        _warn(f"error: {exc}")
    except TimeoutError:
        _warn(f"error: Kafka at {bootstrap} did not answer within {timeout:g}s")
    except (KafkaError, OSError) as exc:
        _warn(f"error: cannot reach Kafka at {bootstrap}: {_describe(exc)}")
    raise typer.Exit(1)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on: all of them, or those matching every filter."""

    reason: str | None = None
    customer: str | None = None  # the record's key (the contract's key is the customer_id)
    positions: frozenset[tuple[int, int]] = frozenset()  # (partition, offset) in the DLQ topic
    since: datetime | None = None  # dead-lettered (the record's Kafka timestamp) at or after

    @property
    def any(self) -> bool:
        """Whether any filter is set (else: every dead letter)."""
        return bool(self.reason or self.customer or self.positions or self.since)

    def matches(self, dead: DeadLetter) -> bool:
        return (
            (self.since is None or dead.timestamp_ms >= self.since.timestamp() * 1000)
            and (self.reason is None or dead.reason == self.reason)
            and (self.customer is None or dead.key == self.customer.encode("utf-8"))
            and (not self.positions or (dead.partition, dead.offset) in self.positions)
        )

    def describe(self) -> str:
        parts = []
        if self.reason:
            parts.append(f"with reason {self.reason}")
        if self.customer:
            parts.append(f"of customer {_printable(self.customer)}")
        if self.positions:
            parts.append("at " + ", ".join(f"{p}@{o}" for p, o in sorted(self.positions)))
        if self.since:
            parts.append(f"since {self.since.isoformat()}")
        return (" " + " ".join(parts)) if parts else ""


def parse_position(text: str) -> tuple[int, int]:
    """PARTITION@OFFSET, as the list's "dead letter" column shows it."""
    partition, at, offset = text.partition("@")
    if not at or not partition.isdigit() or not offset.isdigit():
        raise typer.BadParameter(
            f"{_printable(text)!r} is not PARTITION@OFFSET (e.g. 0@42, as `dlq list` shows)",
            param_hint="--offset",
        )
    return int(partition), int(offset)


def _select(letters: list[DeadLetter], selection: Selection) -> list[DeadLetter]:
    chosen = [d for d in letters if selection.matches(d)]
    missing = selection.positions - {(d.partition, d.offset) for d in chosen}
    if missing:
        where = ", ".join(f"{p}@{o}" for p, o in sorted(missing))
        raise DlqError(f"no dead letter{selection.describe()} at {where}")
    return chosen


def _table(letters: Sequence[DeadLetter], target: bool = False) -> Table:
    table = Table()
    table.add_column("dead letter", no_wrap=True)
    table.add_column("dead-lettered at", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("original", no_wrap=True)
    if target:
        table.add_column("redrive to", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("detail", overflow="fold")
    table.add_column("value", overflow="fold")
    for d in letters:
        cells = [d.where, _when(d.dead_lettered_at), d.reason, d.original]
        if target:
            cells.append(d.original_topic or "-")
        cells += [
            preview(d.key, 40),
            _clip(_printable(d.detail or ""), 60) or "-",
            preview(d.value, 60),
        ]
        table.add_row(*(Text(c) for c in cells))  # Text: a value is never read as markup
    return table


def _counts(letters: Sequence[DeadLetter]) -> Table:
    table = Table()
    table.add_column("reason", no_wrap=True)
    table.add_column("count", justify="right")
    for reason, count in sorted(Counter(d.reason for d in letters).items()):
        table.add_row(Text(reason), Text(str(count)))
    return table


ReasonOption = Annotated[
    str | None,
    typer.Option("--reason", help="Only the dead letters of this reason (e.g. future_dated)."),
]
CustomerOption = Annotated[
    str | None,
    typer.Option("--customer", help="Only the dead letters keyed by this customer_id."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="TIME",
        help="Only the dead letters written at or after this time (RFC 3339, with offset).",
    ),
]
OffsetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--offset",
        metavar="PARTITION@OFFSET",
        help="Only the dead letter at this place in the dead-letter topic (as `dlq list` "
        "shows it); repeat for several. One that is not there is an error (exit code 1).",
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", min=0.1, help="Seconds to wait for Kafka before giving up (exit code 1)."
    ),
]


LIST_HELP = (
    "List the dead letters: where each came from, why, its key and a preview of its value, "
    "then a count per reason. Read only: no consumer group, nothing committed. Records "
    "without the dlq_* headers are listed with reason 'unknown'."
)
REDRIVE_HELP = (
    "Publish dead letters back to their original topic, unchanged, once the cause is fixed."
    "\n\n"
    "Each selected dead letter's key, value bytes and original headers (every header but the "
    "dlq_* ones) go to its original topic (header dlq_original_topic), with an idempotent "
    "producer and acks=all; success is reported only once every record is acknowledged. Only "
    "the service's input topics are redriven to; other dead letters are skipped with a "
    "warning, and so is a dead letter cut to its first 64 KiB (dlq_truncated): it is not the "
    "original record. The dead letters stay in the dead-letter topic. --reason, --customer and "
    "--offset narrow the selection (all must match); `--offset 0@42` redrives exactly that one."
    "\n\n"
    "Redriving the same dead letter twice is safe by the contract: a repeated event is stale "
    "(its sequence, version or (occurred_at, event_id) is not newer than the one applied), "
    "and a daily key allows one decision, so a second redrive publishes nothing new."
    "\n\n"
    "Exit code 0 when every record was published, 1 if any publish failed (each is named)."
)


def _selection(
    reason: str | None, customer: str | None, offsets: list[str] | None, since: str | None
) -> Selection:
    return Selection(
        reason,
        customer,
        frozenset(parse_position(o) for o in offsets or ()),
        parse_time(since, "--since") if since is not None else None,
    )


def _read_selected(settings: Settings, selection: Selection, timeout: float) -> list[DeadLetter]:
    """The dead-letter topic, read to the end offsets taken now, filtered."""
    topic, bootstrap = settings.topics.dead_letter, settings.kafka_bootstrap_servers
    letters = _run(bootstrap, timeout, lambda: read_dead_letters(bootstrap, topic, timeout))
    try:
        return _select(letters, selection)
    except DlqError as exc:
        typer.echo(f"error: {exc} in {topic}", err=True)
        raise typer.Exit(1) from None


@dlq.command("list", help=LIST_HELP)
def list_dead_letters(
    reason: ReasonOption = None,
    customer: CustomerOption = None,
    offset: OffsetOption = None,
    since: SinceOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Show only the N most recent.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per dead letter (for scripts).")
    ] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
) -> None:
    selection = _selection(reason, customer, offset, since)
    settings = _settings()
    topic = settings.topics.dead_letter
    selected = _read_selected(settings, selection, timeout)
    shown = selected[-limit:] if limit is not None else selected
    if as_json:
        for dead in shown:
            typer.echo(json.dumps(dead.to_json(), ensure_ascii=False))
        return
    out = _out()
    which = selection.describe()
    if not selected:
        out.print(Text(f"no dead letters{which} in {topic}"))
        return
    out.print(Text(f"{topic}{which}"))
    out.print(_table(shown))
    out.print(Text("per reason"))
    out.print(_counts(selected))
    more = f" (showing the {len(shown)} most recent)" if len(shown) < len(selected) else ""
    out.print(Text(f"{_plural(len(selected), 'dead letter')}{which}{more}"))


@dlq.command("redrive", help=REDRIVE_HELP)
def redrive(
    reason: ReasonOption = None,
    customer: CustomerOption = None,
    offset: OffsetOption = None,
    since: SinceOption = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="Redrive every dead letter (needed when no filter selects some)."
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask on a terminal before publishing.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Publish nothing; show what would be redriven.")
    ] = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
) -> None:
    selection = _selection(reason, customer, offset, since)
    if not selection.any and not every and not dry_run:
        raise typer.BadParameter(
            "select the dead letters with --reason, --customer, --offset or --since, or pass "
            "--all to redrive every one",
            param_hint="--all",
        )
    settings = _settings()
    topic, bootstrap = settings.topics.dead_letter, settings.kafka_bootstrap_servers
    plan = plan_redrive(_read_selected(settings, selection, timeout), settings.topics.inputs)
    for dead, why in plan.skipped:
        _warn(f"warning: skipped dead letter {dead.where} (reason {dead.reason}): {why}")
    if plan.duplicates:
        _warn(f"note: {plan.duplicates} identical dead letters are published once")
    out = _out()
    which = selection.describe()
    if not plan.publish:
        out.print(Text(f"nothing to redrive{which} from {topic}"))
        return
    if dry_run:
        out.print(Text(f"would redrive{which} (dry run: nothing published)"))
        out.print(_table(plan.publish, target=True))
        _summary(out, plan.publish, [], "would redrive")
        return
    if not confirmed(
        f"Publish {_plural(len(plan.publish), 'dead letter')}{which} back to their input topics?",
        yes,
    ):
        _warn("redrive: nothing was published")
        raise typer.Exit(1)
    failed = _run(bootstrap, timeout, lambda: publish(bootstrap, plan.publish, timeout))
    for dead, why in failed:
        _warn(
            f"error: dead letter {dead.where} (reason {dead.reason}, {dead.original}) "
            f"was not redriven to {dead.original_topic}: {why}"
        )
    _summary(out, plan.publish, failed, "redriven")
    if failed:
        raise typer.Exit(1)


def _summary(
    out: Console,
    published: Sequence[DeadLetter],
    failed: Sequence[tuple[DeadLetter, str]],
    verb: str,
) -> None:
    failures = {(d.topic, d.partition, d.offset) for d, _ in failed}
    done = [d for d in published if (d.topic, d.partition, d.offset) not in failures]
    if done:
        table = Table()
        table.add_column("topic", no_wrap=True)
        table.add_column("reason", no_wrap=True)
        table.add_column("count", justify="right")
        for (topic, reason), count in sorted(
            Counter((d.original_topic or "-", d.reason) for d in done).items()
        ):
            table.add_row(Text(topic), Text(reason), Text(str(count)))
        out.print(Text(f"{verb} per topic and reason"))
        out.print(table)
    tail = f", {len(failed)} failed" if failed else ""
    out.print(Text(f"{verb}: {len(done)}{tail}"))
