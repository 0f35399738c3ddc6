"""AUTO_TOPUP_MIGRATE_ON_START=false, as in deploy/k8s: `run` applies no migration, it only
checks that the schema is current. A database that lacks one stops it with one line and exit
code 4; a current one lets a role that may not change the schema run the service; `migrate`
needs no Stripe key."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.adapters.postgres.migrate import migration_files
from service.domain.reasons import ExitCode
from tests.cli_tools import run_cli
from tests.pg_tools import connect
from tests.service_process import ServiceProcess

LATEST = migration_files()[-1][0]
CHECK_ONLY = {"AUTO_TOPUP_MIGRATE_ON_START": "false", "AUTO_TOPUP_HTTP_PORT": "0"}


def _as(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}"))


def _messages(stderr: str) -> list[str]:
    return [json.loads(line)["msg"] for line in stderr.splitlines() if line.startswith("{")]


async def _versions(database_url: str) -> set[str]:
    conn = await connect(database_url)
    try:
        return {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    finally:
        await conn.close()


@pytest.fixture
async def dml_role(database_url: str) -> AsyncIterator[str]:
    """A login role that may read and write the tables, but create nothing: the service's
    role in deploy/k8s. Dropped after the test."""
    role = f"auto_topup_rt_{uuid.uuid4().hex[:8]}"
    conn = await connect(database_url)
    try:
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        await conn.execute(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{role}"')
        await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        await conn.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
        )
        await conn.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        yield role
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.close()


async def test_run_refuses_a_database_without_the_latest_migration(
    service_env: dict[str, str], database_url: str
) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", LATEST)
    finally:
        await conn.close()

    done = await run_cli({**service_env, **CHECK_ONLY}, "run")

    assert done.code == ExitCode.SCHEMA_BEHIND, done.err  # 4, as docs/operating.md says
    assert "Traceback" not in done.err
    assert (
        f"refusing to start: the database schema is older than this version: migrations "
        f"{LATEST} are not applied (AUTO_TOPUP_MIGRATE_ON_START=false): run `auto-topup "
        "migrate` with a role that may change the schema, then start again"
    ) in _messages(done.err)
    assert LATEST not in await _versions(database_url), "run migrated all the same"


async def test_run_with_a_current_schema_needs_no_right_to_change_it(
    service_env: dict[str, str], database_url: str, dml_role: str
) -> None:
    proc = ServiceProcess(
        {**service_env, **CHECK_ONLY, "DATABASE_URL": _as(database_url, dml_role)}
    )
    proc.start()  # until it consumes
    assert proc.stop() == 0, "\n".join(proc.lines[-30:])
    assert not any("database migrated" in line for line in proc.lines)


async def test_migrate_needs_no_stripe_key(database_url: str) -> None:
    """The migrate init container gets DATABASE_URL and nothing secret besides."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": database_url}
    done = await run_cli(env, "migrate", inherit=False)
    assert (done.code, done.out.strip()) == (0, "database is up to date"), done.err
