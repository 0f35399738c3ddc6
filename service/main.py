"""The installed `auto-topup` command: the operator commands (`service.entrypoints.cli`) and
`run`, which starts what `service.bootstrap` wires. The top layer: nothing imports it."""

from __future__ import annotations

import asyncio
import zoneinfo

import typer

from service.adapters.postgres.connection import POSTGRES_ERRORS
from service.bootstrap import build
from service.domain import calendar
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


def use_pinned_tzdata() -> None:
    """Every zone from the tzdata package the lock pins, never from the host's zone files (which
    zoneinfo reads first): two hosts with other system tzdata must agree on a business date.
    Called before anything looks a zone up."""
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    calendar.zone.cache_clear()


def main() -> None:
    use_pinned_tzdata()
    cli()


if __name__ == "__main__":
    main()
