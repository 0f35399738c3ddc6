"""The installed `auto-topup` command: the operator commands (`service.entrypoints.cli`) and
`run`, which starts what `service.bootstrap` wires. The top layer: nothing imports it."""

from __future__ import annotations

import asyncio

import typer

from service.adapters.postgres.connection import POSTGRES_ERRORS
from service.bootstrap import build
from service.entrypoints import logs
from service.entrypoints.cli import cli
from service.entrypoints.cli_config import environment_help
from service.entrypoints.cli_support import database_failed, load_settings


@cli.command(epilog=environment_help())
def run() -> None:
    """Run the service in the foreground until SIGTERM or SIGINT."""
    settings = load_settings(stripe=True)
    logs.configure(settings.log_level)
    service = build(settings)
    try:
        asyncio.run(service.app.run())
    except POSTGRES_ERRORS as exc:
        # Start-up stopped on what no wait fixes (until_it_works): one line, exit code 2 for
        # a misconfiguration (DATABASE_URL), 1 otherwise.
        database_failed(exc)
    raise typer.Exit(service.exit_code)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
