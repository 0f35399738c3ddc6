"""The `auto-topup` command."""

from __future__ import annotations

import asyncio

import asyncpg
import typer
from pydantic import ValidationError

from service.config import Settings, describe_error
from service.entrypoints import logs

cli = typer.Typer(
    help="Tops up prepaid wallets the moment they run low.",
    no_args_is_help=True,
    add_completion=False,
)


def load_settings() -> Settings:
    try:
        return Settings()  # filled from the environment
    except ValidationError as exc:
        typer.echo(describe_error(exc), err=True)
        raise typer.Exit(2) from None


@cli.command()
def run() -> None:
    """Run the service in the foreground until SIGTERM or SIGINT."""
    settings = load_settings()
    logs.configure(settings.log_level)
    from service.bootstrap import build

    service = build(settings)
    asyncio.run(service.app.run())
    raise typer.Exit(service.exit_code)


@cli.command()
def migrate() -> None:
    """Apply the database migrations and exit."""
    settings = load_settings()
    logs.configure(settings.log_level)
    from service.adapters.postgres.migrate import migrate as apply

    async def go() -> list[str]:
        conn = await asyncpg.connect(settings.dsn)
        try:
            return await apply(conn)
        finally:
            await conn.close()

    applied = asyncio.run(go())
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
