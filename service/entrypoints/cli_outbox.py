"""`auto-topup outbox`: the outgoing records Kafka refused for good (set aside) or that wait for
a retry, and sending them again.

Arguments in, text out: the reads and writes are in service/adapters/postgres/outbox_admin.py.
Exit codes: 0 done; 1 not found, not retriable, or PostgreSQL unreachable; 2 bad usage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from service.adapters.postgres.outbox_admin import (
    RecordNotFound,
    RecordNotRetriable,
    Retried,
    TroubledRecord,
    retry,
    troubled_records,
)
from service.entrypoints.cli_support import console as _out
from service.entrypoints.cli_support import printable
from service.entrypoints.cli_support import settings as _settings
from service.entrypoints.cli_support import with_database as _with_database

if TYPE_CHECKING:
    pass

T = TypeVar("T")

DEFAULT_LIMIT = 1000
ERROR_SHOWN_CHARS = 300

outbox = typer.Typer(
    name="outbox",
    help="Outgoing records Kafka refused for good (set aside) or that wait for a retry, and "
    "sending them again.",
    no_args_is_help=True,
    add_completion=False,
)


def _key(key: bytes | None) -> str:
    return "-" if key is None else printable(key[:140].decode("utf-8", "replace"))


def _instant(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _jsonable(r: TroubledRecord) -> dict[str, Any]:
    def iso(at: datetime | None) -> str | None:
        return None if at is None else at.isoformat()

    return {
        "id": r.id,
        "state": r.state,
        "topic": r.topic,
        "dedupe_key": r.dedupe_key,
        "key": None if r.key is None else r.key.decode("utf-8", "replace"),
        "value_bytes": r.value_bytes,
        "attempts": r.attempts,
        "last_error": r.last_error,
        "set_aside_at": iso(r.set_aside_at),
        "next_attempt_at": iso(r.next_attempt_at),
        "created_at": iso(r.created_at),
    }


def _table(rows: list[TroubledRecord]) -> Table:
    table = Table()
    for name in ("id", "state", "topic", "key", "bytes", "attempts", "since", "last error"):
        table.add_column(name, no_wrap=name != "last error")
    for r in rows:
        table.add_row(
            str(r.id),
            Text(r.state, style="bold red" if r.state == "set_aside" else ""),
            printable(r.topic),
            _key(r.key),
            "-" if r.value_bytes is None else str(r.value_bytes),
            str(r.attempts),
            _instant(r.set_aside_at if r.set_aside_at is not None else r.next_attempt_at),
            printable((r.last_error or "")[:ERROR_SHOWN_CHARS]),
        )
    return table


LIST_HELP = (
    "The outgoing records not published because Kafka refused them for good (set_aside: sent "
    "again only by `outbox retry`) or because their last send failed (retrying: the relay "
    "sends them again after a backoff). Read-only."
)
RETRY_HELP = (
    "Send records again at once: one or more by id (set aside or retrying), or --all the "
    "records set aside. The running service's relay sends them within a second; one that is "
    "refused again is set aside again."
)


@outbox.command("list", help=LIST_HELP)
def list_records(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per record (for scripts).")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Show at most N, oldest first.")
    ] = DEFAULT_LIMIT,
) -> None:
    settings = _settings()
    rows = _with_database(settings.dsn, lambda conn: troubled_records(conn, limit))
    if as_json:
        for record in rows:
            typer.echo(json.dumps(_jsonable(record), ensure_ascii=False))
        return
    out = _out()
    if not rows:
        out.print(Text("no outgoing record is set aside or failing"))
        return
    out.print(_table(rows))
    aside = sum(r.state == "set_aside" for r in rows)
    out.print(
        Text(
            f"{aside} set aside (`auto-topup outbox retry ID` or `--all` once the cause is "
            f"fixed), {len(rows) - aside} retrying by themselves"
        )
    )


@outbox.command("retry", help=RETRY_HELP)
def retry_records(
    record_ids: Annotated[
        list[int] | None,
        typer.Argument(metavar="[ID]...", help="Outbox record ids, as `outbox list` shows them."),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every record set aside (instead of ids).")
    ] = False,
) -> None:
    ids = record_ids or []
    if bool(ids) == every:
        raise typer.BadParameter("give record ids or --all (not both)")
    if any(i < 1 for i in ids):
        raise typer.BadParameter("an outbox record id is a positive integer", param_hint="ID")
    settings = _settings()
    try:
        done: list[Retried] = _with_database(
            settings.dsn, lambda conn: retry(conn, None if every else ids)
        )
    except RecordNotFound as exc:
        typer.echo(f"error: no outbox record {exc}", err=True)
        raise typer.Exit(1) from None
    except RecordNotRetriable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not done:
        typer.echo("nothing is set aside: nothing to retry")
        return
    listed = ", ".join(f"{r.id} ({printable(r.topic)})" for r in done)
    typer.echo(
        f"retrying {len(done)} record{'s' if len(done) != 1 else ''}: {listed} "
        "(the running service's relay sends them)"
    )
