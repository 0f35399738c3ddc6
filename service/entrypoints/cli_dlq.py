"""`auto-topup dlq`: list the dead letters, and redrive them to their original topic.

Both commands read the dead-letter topic from its beginning to the end offsets taken at start,
with assigned partitions and no consumer group: reading commits nothing and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.adapters.kafka.dead_letters import (
    KAFKA_ERRORS,
    describe,
    publish,
    quiet_client_logs,
    read_dead_letters,
)
from service.adapters.kafka.security import KafkaAccess, KafkaRefused, kafka_access
from service.entrypoints.cli_support import confirmed, parse_time
from service.entrypoints.cli_support import console as _out
from service.entrypoints.cli_support import settings as _settings
from service.service_layer.dead_letters import (
    DeadLetter,
    DlqError,
    Selection,
    plan_redrive,
    printable,
    select,
)

if TYPE_CHECKING:
    from service.config import Settings

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0

dlq = typer.Typer(
    name="dlq",
    help="List the dead letters, and redrive them to their original topic once fixed.",
    no_args_is_help=True,
    add_completion=False,
)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def preview(raw: bytes | None, width: int) -> str:
    """Any bytes, shown safely: UTF-8 with replacement characters, escaped, truncated."""
    if raw is None:
        return "(none)"
    return _clip(printable(raw[: width * 4].decode("utf-8", "replace")), width)


def _when(text: str | None) -> str:
    if text is None:
        return "-"
    try:
        return datetime.fromisoformat(text).isoformat(timespec="seconds")
    except ValueError:
        return _clip(printable(text), 32)


def _warn(text: str) -> None:
    typer.echo(text, err=True)


def _run(kafka: KafkaAccess, timeout: float, work: Callable[[], Awaitable[T]]) -> T:
    """Runs the Kafka work; any failure to reach Kafka is one line and exit code 1."""
    quiet_client_logs()

    async def go() -> T:
        return await work()

    try:
        return asyncio.run(go())
    except DlqError as exc:
        _warn(f"error: {exc}")
    except TimeoutError:
        _warn(f"error: Kafka at {kafka.bootstrap} did not answer within {timeout:g}s")
    except KafkaRefused as exc:
        _warn(f"error: {exc}")
    except KAFKA_ERRORS as exc:
        _warn(f"error: cannot reach Kafka at {kafka.bootstrap}: {describe(exc)}")
    raise typer.Exit(1)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def parse_position(text: str) -> tuple[int, int]:
    """PARTITION@OFFSET, as the list's "dead letter" column shows it."""
    partition, at, offset = text.partition("@")
    if not at or not partition.isdigit() or not offset.isdigit():
        raise typer.BadParameter(
            f"{printable(text)!r} is not PARTITION@OFFSET (e.g. 0@42, as `dlq list` shows)",
            param_hint="--offset",
        )
    return int(partition), int(offset)


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
            _clip(printable(d.detail or ""), 60) or "-",
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
    topic, kafka = settings.topics.dead_letter, kafka_access(settings)
    letters = _run(kafka, timeout, lambda: read_dead_letters(kafka, topic, timeout))
    try:
        return select(letters, selection)
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
    topic, kafka = settings.topics.dead_letter, kafka_access(settings)
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
    failed = _run(kafka, timeout, lambda: publish(kafka, plan.publish, timeout))
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
