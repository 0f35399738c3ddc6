"""Plain SQL migrations, applied in order, each recorded in schema_migrations."""

from __future__ import annotations

import logging
from importlib.resources import files

import asyncpg

log = logging.getLogger(__name__)

_LOCK_ID = 0x70707570  # advisory lock: one migrator at a time across instances


def migration_files() -> list[tuple[str, str]]:
    folder = files(__package__).joinpath("migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text("utf-8")) for name in names]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Applies the migrations not yet applied; returns their versions."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
            log.info("applied migration %s", version)
    return applied_now
