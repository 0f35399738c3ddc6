"""What the operator commands share: settings, a console that never wraps a piped row, one
PostgreSQL connection per command with a one-line error, and terminal-safe text.

The commands import this module, and cli.py imports the commands: nothing here imports cli.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from service.adapters.postgres.connection import (
    DATABASE_ERRORS,
    NOT_MIGRATED,
    Connection,
    on_connection,
)
from service.adapters.postgres.errors import problem_line
from service.config import Settings, describe_error

T = TypeVar("T")


def load_settings(*, stripe: bool = False) -> Settings:
    """The settings from the environment; `stripe`: the Stripe key is required too."""
    try:
        loaded = Settings()
    except ValidationError as exc:
        typer.echo(describe_error(exc), err=True)
        raise typer.Exit(2) from None
    if stripe and loaded.stripe_api_key is None:
        typer.echo("configuration error: STRIPE_API_KEY: Field required", err=True)
        raise typer.Exit(2)
    return loaded


def settings() -> Settings:
    return load_settings()


def database_failed(exc: BaseException) -> NoReturn:
    """One line for the operator, and the exit code the README lists."""
    line, code = problem_line(exc)
    typer.echo(line, err=True)
    raise typer.Exit(code) from None


def console() -> Console:
    """Rich on stdout. Piped (and COLUMNS unset), a row is never wrapped: one line each."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=False, width=1000 if piped else None)


def printable(text: str) -> str:
    """Control characters (a terminal's escape sequences among them) shown as escapes."""
    return "".join(
        c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        for c in text
    )


def parse_time(text: str, option: str) -> datetime:
    """RFC 3339 with an offset; a time without one is ambiguous and rejected."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{printable(text)!r} is not an RFC 3339 time (e.g. 2026-11-25T10:00:00Z)",
            param_hint=option,
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise typer.BadParameter(
            f"{printable(text)!r} has no UTC offset; add one, e.g. {at.isoformat()}Z or "
            f"{at.isoformat()}+01:00",
            param_hint=option,
        )
    return at


def confirmed(question: str, yes: bool) -> bool:
    """True when the operator agreed: asked on a terminal (unless --yes); a script (no
    terminal) goes on, as it always did, and passes --yes to say so."""
    if yes or not sys.stdin.isatty():
        return True
    return typer.confirm(question, default=False)


def with_database(dsn: str, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Runs `work` on one connection; PostgreSQL away or not migrated: one line, exit 1."""
    try:
        return asyncio.run(on_connection(dsn, work))
    except NOT_MIGRATED as exc:
        problem = f"{exc}: run `auto-topup migrate` first"
    except DATABASE_ERRORS as exc:
        problem = f"cannot reach PostgreSQL: {type(exc).__name__}: {exc}"
    typer.echo(f"error: {printable(problem)}", err=True)
    raise typer.Exit(1)
