"""`auto-topup replay`: applies the input topics again over a time window.

Live, every batch goes through the service's own BatchHandler, PgUnitOfWork and BatchProcessor,
and an in-process OutboxRelay publishes what they queue: a replay is exactly as safe as the
service (row locks, daily keys, staleness), so replaying what was already applied changes
nothing and publishes nothing new. With --dry-run the same handler runs on an in-memory unit of
work that reads wallets from PostgreSQL (plain SELECTs, on a read-only connection) and keeps
every change in memory: nothing is written to PostgreSQL and nothing is published.
"""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.adapters.startup import Unreachable
from service.config import Settings
from service.entrypoints import logs
from service.entrypoints.cli_support import confirmed, load_settings, parse_time
from service.entrypoints.replay_job import (
    Options,
    Outcome,
    Replay,
    ReplayError,
    default_group,
)
from service.service_layer.replay import REPORT_FORMATS, by_customer, write_report

EXIT_FAILED = 1  # Kafka or PostgreSQL unreachable, a missing topic, an unmigrated database
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM: what was applied is committed; --group goes on


class _QuietWaits(logging.Filter):
    """The bounded wait ends in one line; the service's 'waiting for ...' warnings are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("waiting for")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[int], None]]:
    """The bar on stderr while the window's records are applied."""
    with _progress() as progress:
        task = progress.add_task("replay", total=total)
        yield lambda done: progress.update(task, completed=done)


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


FromOption = Annotated[
    str,
    typer.Option(
        "--from", metavar="TIME", help="Replay records from this time (RFC 3339, with offset)."
    ),
]
ToOption = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="TIME",
        help="Stop before the records of this time (default: the topics' ends at start).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Decide in memory: write nothing to PostgreSQL, publish nothing."
    ),
]
ReportOption = Annotated[
    Path | None,
    typer.Option("--report", metavar="PATH", help="Write every decision to PATH (.csv/.json)."),
]
GroupOption = Annotated[
    str | None,
    typer.Option(
        "--group",
        metavar="NAME",
        help="Consumer group (default: <AUTO_TOPUP_CONSUMER_GROUP>-replay-<now>); "
        "a group that committed progress goes on from there.",
    ),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait", min=0.1, metavar="SECONDS", help="How long to wait for Kafka and PostgreSQL."
    ),
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", help="Do not ask on a terminal before a live replay (for scripts)."),
]


def _window_options(
    since: str, until: str | None, report: Path | None
) -> tuple[datetime, datetime | None]:
    """--from and --to as instants, once they and --report are checked."""
    start = parse_time(since, "--from")
    end = parse_time(until, "--to") if until is not None else None
    if end is not None and end < start:
        raise typer.BadParameter(f"{until} is before --from {since}", param_hint="--to")
    if report is not None and report.suffix.lower() not in REPORT_FORMATS:
        raise typer.BadParameter("the report must end in .csv or .json", param_hint="--report")
    if report is not None and not report.absolute().parent.is_dir():
        raise typer.BadParameter(f"no folder {report.parent} for the report", param_hint="--report")
    return start, end


def replay(
    since: FromOption,
    until: ToOption = None,
    dry_run: DryRunOption = False,
    report: ReportOption = None,
    group: GroupOption = None,
    wait: WaitOption = 30.0,
    yes: YesOption = False,
) -> None:
    """Apply the input topics again over a time window, as safely as the service does."""
    start, end = _window_options(since, until, report)
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
    job = Replay(settings, options, _progress_bar)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, job.stop)
    try:
        outcome = await job.run()
    except (ReplayError, Unreachable) as exc:
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
