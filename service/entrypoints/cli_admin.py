"""`auto-topup admin`: repairs by hand, each one audited.

Arguments in, text out: the reads and writes are in service/adapters/postgres/counters.py.
Exit codes: 0 done; 1 no such wallet or counter, or PostgreSQL unreachable or failing; 2 bad
usage or a misconfigured DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

import typer

from service.adapters.postgres.connection import (
    DATABASE_ERRORS,
    NOT_MIGRATED,
    Connection,
    on_connection,
)
from service.adapters.postgres.counters import (
    Counter,
    CounterNotSet,
    CounterReset,
    WalletNotFound,
    reset_counter,
)
from service.contract.types import ID_PATTERN, MAX_COUNT
from service.entrypoints import logs
from service.entrypoints.cli_support import database_failed, load_settings

CONNECT_TIMEOUT_SECONDS = 10.0
_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

admin = typer.Typer(
    name="admin",
    help="Repairs by hand, each one audited (who, when, why) in PostgreSQL and in the log.",
    no_args_is_help=True,
    add_completion=False,
)

_TO_HELP = (
    "The new value: what the producer really sent last; events with a higher one apply "
    "again (0: any)."
)
CustomerArg = Annotated[
    str, typer.Argument(help="The wallet's customer_id.", show_default=False, metavar="CUSTOMER")
]
ToOption = Annotated[int, typer.Option("--to", min=0, max=MAX_COUNT, help=_TO_HELP)]
ByOption = Annotated[
    str, typer.Option("--by", help="Who resets it (kept in counter_audit).", show_default=False)
]
WhyOption = Annotated[
    str, typer.Option("--why", help="Why (kept in counter_audit).", show_default=False)
]


def _text(value: str, hint: str) -> str:
    value = value.strip()
    if not value:
        raise typer.BadParameter("must not be empty", param_hint=hint)
    if _CONTROL.search(value) or len(value) > 1000:
        raise typer.BadParameter("at most 1,000 printable characters", param_hint=hint)
    return value


def _reset(counter: Counter, customer: str, to: int, by: str, why: str) -> None:
    if not _ID.match(customer):
        raise typer.BadParameter(f"{customer[:140]!r} is not a customer_id", param_hint="CUSTOMER")
    by, why = _text(by, "--by"), _text(why, "--why")
    settings = load_settings()
    logs.configure(settings.log_level)  # the audit line goes to the log too (stderr, JSON)
    now = settings.clock()()  # the service's clock (AUTO_TOPUP_CLOCK_OFFSET_SECONDS)

    async def go(conn: Connection) -> CounterReset:
        return await reset_counter(conn, customer, counter, to, by=by, why=why, now=now)

    try:
        done = asyncio.run(on_connection(settings.dsn, go, CONNECT_TIMEOUT_SECONDS))
    except WalletNotFound:
        typer.echo(f"error: no wallet of customer {customer!r}", err=True)
        raise typer.Exit(1) from None
    except CounterNotSet as exc:
        typer.echo(f"error: {exc}: nothing to reset", err=True)
        raise typer.Exit(1) from None
    except NOT_MIGRATED as exc:
        typer.echo(f"error: {exc}: run `auto-topup migrate` first", err=True)
        raise typer.Exit(1) from None
    except DATABASE_ERRORS as exc:
        database_failed(exc)
    typer.echo(
        f"{done.counter} of {done.customer_id} reset: {done.old_value} -> {done.new_value} "
        f"by {done.reset_by} (counter_audit row {done.audit_id}); "
        f"events with a {done.counter} above {done.new_value} apply again"
    )


SEQUENCE_HELP = (
    "Set a wallet's highest balance sequence seen back to --to, when a producer's runaway "
    "sequence made every later balance event stale. Audited in counter_audit and the log."
)
VERSION_HELP = (
    "Set a customer's highest settings version seen back to --to, when a runaway version "
    "made every later settings update stale. Audited in counter_audit and the log."
)


@admin.command("reset-sequence", help=SEQUENCE_HELP)
def reset_sequence(customer: CustomerArg, to: ToOption, by: ByOption, why: WhyOption) -> None:
    _reset(Counter.SEQUENCE, customer, to, by, why)


@admin.command("reset-version", help=VERSION_HELP)
def reset_version(customer: CustomerArg, to: ToOption, by: ByOption, why: WhyOption) -> None:
    _reset(Counter.VERSION, customer, to, by, why)
