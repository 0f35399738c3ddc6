"""Plain SQL migrations, applied in order, each recorded in schema_migrations."""

from __future__ import annotations

import logging
from importlib.resources import files

import asyncpg

log = logging.getLogger(__name__)

_LOCK_ID = 0x70707570  # advisory lock: one migrator at a time across instances


class SchemaBehind(Exception):
    """The database lacks migrations this version needs (and start-up may not apply them)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"the database schema is older than this version: migrations {', '.join(missing)} "
            "are not applied (AUTO_TOPUP_MIGRATE_ON_START=false): run `auto-topup migrate` "
            "with a role that may change the schema, then start again"
        )
        self.missing = missing


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


async def pending(conn: asyncpg.Connection) -> list[str]:
    """The migrations not applied yet (all of them in a database never migrated); reads only."""
    known = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    rows = await conn.fetch("SELECT version FROM schema_migrations") if known else []
    done = {r["version"] for r in rows}
    return [version for version, _ in migration_files() if version not in done]
