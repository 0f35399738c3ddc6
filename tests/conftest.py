"""Where the tests find PostgreSQL and Kafka.

Order: explicit KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL (what `make test` exports for the local
stack), else testcontainers when a Docker engine answers, else a clear failure (never a skip).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service.adapters.postgres.migrate import migrate
from tests.pg_tools import close_pool, connect, create_pool


@dataclass(frozen=True)
class Infra:
    kafka: str
    database_url: str  # a server URL; tests make their own databases on it
    stripe_api_base: str | None


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    stripe = os.environ.get("STRIPE_API_BASE")
    if kafka and database:
        yield Infra(kafka, database, stripe)
        return
    if not _docker_answers():
        pytest.fail(
            "no Kafka/PostgreSQL: run `make test` (starts the local stack), or set "
            "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, or start a Docker engine for "
            "testcontainers",
            pytrace=False,
        )
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    with (
        PostgresContainer("postgres:16-alpine", driver=None) as pg,
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kc,
    ):
        yield Infra(kc.get_bootstrap_server(), pg.get_connection_url(), stripe)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


TEMPLATE = f"auto_topup_tpl_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
async def template_db(infra: Infra) -> AsyncIterator[str]:
    """A migrated database, built once per session; each test copies it."""
    admin = await connect(_with_database(infra.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        conn = await connect(_with_database(infra.database_url, TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield TEMPLATE
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(infra: Infra, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test (a copy of the template)."""
    name = f"auto_topup_t_{uuid.uuid4().hex[:12]}"
    admin = await connect(_with_database(infra.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield _with_database(infra.database_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await close_pool(pool)
