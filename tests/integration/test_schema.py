"""The migrations make the documented schema: service/adapters/postgres/schema.sql is what a
freshly migrated database's catalog says, word for word."""

from __future__ import annotations

import difflib

import pytest

from tests.pg_tools import connect
from tests.schema_snapshot import REGENERATE, SNAPSHOT, render


async def _rendered(database_url: str, *statements: str) -> str:
    conn = await connect(database_url)
    try:
        for statement in statements:
            await conn.execute(statement)
        return await render(conn)
    finally:
        await conn.close()


async def test_the_migrations_make_the_documented_schema(database_url: str) -> None:
    migrated = await _rendered(database_url)  # a copy of a database migrated from empty
    documented = SNAPSHOT.read_text(encoding="utf-8")
    if migrated != documented:
        diff = difflib.unified_diff(
            documented.splitlines(keepends=True),
            migrated.splitlines(keepends=True),
            "schema.sql (documented)",
            "the migrated database",
        )
        pytest.fail(
            "the migrations and service/adapters/postgres/schema.sql differ: run "
            f"`{REGENERATE}` and commit schema.sql\n{''.join(diff)}",
            pytrace=False,
        )


async def test_the_snapshot_shows_a_change_of_the_schema(database_url: str) -> None:
    before = await _rendered(database_url)
    after = await _rendered(
        database_url,
        "ALTER TABLE wallets ADD COLUMN review_note text NOT NULL DEFAULT 'none'",
        "ALTER TYPE wallet_state ADD ATTRIBUTE review_note text",
        "CREATE INDEX wallets_by_partner ON wallets (partner_id)",
    )
    added = {line.strip() for line in after.splitlines()} - {
        line.strip() for line in before.splitlines()
    }
    assert added == {
        "review_note              text NOT NULL DEFAULT 'none'::text,",
        "review_note              text",
        "CREATE INDEX wallets_by_partner ON wallets USING btree (partner_id);",
    }, added
