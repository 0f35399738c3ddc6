"""The operator commands of `auto-topup`, registered here and only here. `run`, which starts
the service, is added by `service.main` (the top layer), the installed command."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from service import __version__
from service.adapters.postgres.connection import DATABASE_ERRORS, on_connection
from service.entrypoints import logs
from service.entrypoints.cli_admin import admin
from service.entrypoints.cli_charges import charges
from service.entrypoints.cli_config import config
from service.entrypoints.cli_dlq import dlq
from service.entrypoints.cli_explain import explain
from service.entrypoints.cli_outbox import outbox
from service.entrypoints.cli_prune import HELP as PRUNE_HELP
from service.entrypoints.cli_prune import prune
from service.entrypoints.cli_replay import replay
from service.entrypoints.cli_simulate import simulate_command
from service.entrypoints.cli_support import database_failed, load_settings

cli = typer.Typer(
    help="Tops up prepaid wallets the moment they run low.",
    no_args_is_help=True,
    add_completion=False,
)
cli.add_typer(dlq, name="dlq")
cli.add_typer(charges, name="charges")
cli.add_typer(admin, name="admin")
cli.add_typer(outbox, name="outbox")
cli.add_typer(config, name="config")
cli.command(name="explain")(explain)
cli.command(name="replay")(replay)
cli.command(name="simulate")(simulate_command)
cli.command(name="prune", help=PRUNE_HELP)(prune)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"auto-topup {__version__}")
        raise typer.Exit(0)


@cli.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Tops up prepaid wallets the moment they run low."""


@cli.command()
def migrate() -> None:
    """Apply the database migrations and exit."""
    settings = load_settings()
    logs.configure(settings.log_level)
    from service.adapters.postgres.migrate import migrate as apply

    try:
        applied = asyncio.run(on_connection(settings.dsn, apply))
    except DATABASE_ERRORS as exc:
        database_failed(exc)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")
