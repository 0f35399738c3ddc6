"""`auto-topup prune`: deletes what is past its retention horizon now, as the service's pruner
does every AUTO_TOPUP_RETENTION_INTERVAL_SECONDS (the rules: service/service_layer/retention.py).

Arguments in, text out: the reads and writes are in service/adapters/postgres/retention.py.
Exit codes: 0 done (also: nothing to prune); 1 another pruner kept the lock longer than --wait
(nothing was deleted), or PostgreSQL unreachable or not migrated; 2 bad usage or a bad setting.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from service.adapters.postgres.connection import Connection
from service.adapters.postgres.retention import retention_store
from service.entrypoints.cli_support import console as _out
from service.entrypoints.cli_support import settings as _settings
from service.entrypoints.cli_support import with_database as _with_database
from service.service_layer.retention import (
    COUNTED_FROM,
    DAILY_KEYS,
    TARGETS,
    PruneReport,
    Retention,
)
from service.service_layer.retention import prune as prune_rows

DEFAULT_WAIT_SECONDS = 60.0

HELP = (
    "Delete what is past its retention horizon (AUTO_TOPUP_RETENTION_*_DAYS, on the service's "
    "clock), in batches, and print the rows deleted per table. Never deleted: daily keys not "
    "settled (claimed, charging, needs_review) and outgoing records not published (or set "
    "aside). The running service does the same every AUTO_TOPUP_RETENTION_INTERVAL_SECONDS; "
    "one pruner at a time (this command waits for the lock)."
)


def _horizon(target: str, before: datetime | None) -> str:
    if before is None:
        return "kept for ever"
    if target == DAILY_KEYS:
        return f"business date before {before.date().isoformat()}"
    return f"before {before.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%SZ')}"


def _jsonable(report: PruneReport, retention: Retention) -> dict[str, Any]:
    def before(target: str) -> str | None:
        at = report.horizons[target]
        if at is None:
            return None
        return at.date().isoformat() if target == DAILY_KEYS else at.isoformat()

    return {
        "dry_run": report.dry_run,
        "now": report.now.isoformat(),
        "tables": {
            t: {"days": retention.days(t), "before": before(t), "rows": report.counts[t]}
            for t in TARGETS
        },
        "total": report.total,
    }


def _table(report: PruneReport, retention: Retention) -> Table:
    table = Table()
    for name in (
        "table",
        "kept",
        "counted from",
        "horizon",
        "would prune" if report.dry_run else "pruned",
    ):
        table.add_column(
            name,
            no_wrap=True,
            justify="right" if name.endswith("prune") or name == "pruned" else "left",
        )
    for t in TARGETS:
        days = retention.days(t)
        table.add_row(
            t,
            "for ever" if not days else f"{days} days",
            COUNTED_FROM[t],
            _horizon(t, report.horizons[t]),
            "-" if report.horizons[t] is None else str(report.counts[t]),
        )
    return table


def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object with the counts (for scripts).")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0.0,
            metavar="SECONDS",
            help="How long to wait for a pruner that runs now (a service instance) to finish.",
        ),
    ] = DEFAULT_WAIT_SECONDS,
) -> None:
    settings = _settings()
    retention = Retention.from_settings(settings)
    now = settings.clock()()

    async def work(conn: Connection) -> PruneReport:
        async with retention_store(conn) as store:
            return await prune_rows(store, retention, now, dry_run=dry_run, lock_wait_seconds=wait)

    report = _with_database(settings.dsn, work)
    if report.busy:
        typer.echo(
            f"error: another pruner (a service instance) held the lock for {wait:g} s: nothing "
            "was deleted; try again, or with a longer --wait",
            err=True,
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(_jsonable(report, retention)))
        return
    out = _out()
    out.print(_table(report, retention))
    at = report.now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if dry_run:
        out.print(Text(f"dry run at {at}: would prune {report.total} rows; nothing was deleted"))
    else:
        out.print(Text(f"pruned {report.total} rows at {at}"))
