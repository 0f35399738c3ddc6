"""The `auto-topup` command."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import asyncpg
import typer
from pydantic import ValidationError

from service.adapters.postgres.errors import problem_line
from service.config import Settings, describe_error
from service.entrypoints import logs
from service.entrypoints.cli_admin import admin
from service.entrypoints.cli_charges import charges
from service.entrypoints.cli_dlq import dlq
from service.entrypoints.cli_explain import explain
from service.entrypoints.cli_outbox import outbox
from service.entrypoints.cli_prune import HELP as PRUNE_HELP
from service.entrypoints.cli_prune import prune
from service.entrypoints.cli_replay import replay

cli = typer.Typer(
    help="Tops up prepaid wallets the moment they run low.",
    no_args_is_help=True,
    add_completion=False,
)
cli.add_typer(dlq, name="dlq")
cli.add_typer(charges, name="charges")
cli.add_typer(admin, name="admin")
cli.add_typer(outbox, name="outbox")
cli.command(name="explain")(explain)
cli.command(name="replay")(replay)
cli.command(name="prune", help=PRUNE_HELP)(prune)


def load_settings(*, stripe: bool = False) -> Settings:
    """The settings from the environment; `stripe`: the Stripe key is required too."""
    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(describe_error(exc), err=True)
        raise typer.Exit(2) from None
    if stripe and settings.stripe_api_key is None:
        typer.echo("configuration error: STRIPE_API_KEY: Field required", err=True)
        raise typer.Exit(2)
    return settings


@cli.command()
def run() -> None:
    """Run the service in the foreground until SIGTERM or SIGINT."""
    settings = load_settings(stripe=True)
    logs.configure(settings.log_level)
    from service.bootstrap import build

    service = build(settings)
    try:
        asyncio.run(service.app.run())
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Start-up stopped on what no wait fixes (until_it_works): one line, exit code 2 for
        # a misconfiguration (DATABASE_URL), 1 otherwise.
        database_failed(exc)
    raise typer.Exit(service.exit_code)


def database_failed(exc: BaseException) -> NoReturn:
    """One line for the operator, and the exit code the README lists."""
    line, code = problem_line(exc)
    typer.echo(line, err=True)
    raise typer.Exit(code) from None


@cli.command()
def migrate() -> None:
    """Apply the database migrations and exit."""
    settings = load_settings()
    logs.configure(settings.log_level)
    from service.adapters.postgres.migrate import migrate as apply

    async def go() -> list[str]:
        conn = await asyncpg.connect(settings.dsn, timeout=10)
        try:
            return await apply(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(go())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        database_failed(exc)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
