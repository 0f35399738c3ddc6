"""The current schema in one file: service/adapters/postgres/schema.sql, what the migrations add
up to, read from the catalog of a freshly migrated database (tables with their columns, types,
nullability, defaults and constraints; indexes; types; sequences; functions and triggers).

    python -m tests.schema_snapshot     (make schema: DATABASE_URL names a server to use)

writes it; tests/integration/test_schema.py fails while the file and the migrations differ.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service.adapters.postgres.migrate import migrate
from tests.pg_tools import connect

SNAPSHOT = Path(__file__).resolve().parents[1] / "service/adapters/postgres/schema.sql"
REGENERATE = "make schema"

HEADER = f"""\
-- The schema that the migrations (migrations/, applied in name order) add up to, read from the
-- catalog of a freshly migrated database. Generated: do not edit; change the schema with a new
-- migration, then run `{REGENERATE}`.
"""

COLUMNS = """
SELECT c.relname AS owner, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
    a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_value
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = $1::text::"char"
ORDER BY c.relname, a.attnum
"""

CONSTRAINTS = """
SELECT c.relname AS owner, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint AS k
JOIN pg_class AS c ON c.oid = k.conrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
ORDER BY c.relname, k.contype DESC, k.conname
"""

INDEXES = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
    AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)
ORDER BY c.relname, name
"""

ENUMS = """
SELECT t.typname AS name, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
FROM pg_type AS t
JOIN pg_namespace AS n ON n.oid = t.typnamespace
JOIN pg_enum AS e ON e.enumtypid = t.oid
WHERE n.nspname = 'public'
GROUP BY t.typname
ORDER BY t.typname
"""

SEQUENCES = """
SELECT s.relname AS name, format_type(q.seqtypid, NULL) AS type,
    c.relname AS owner, a.attname AS column_name
FROM pg_class AS s
JOIN pg_namespace AS n ON n.oid = s.relnamespace
JOIN pg_sequence AS q ON q.seqrelid = s.oid
LEFT JOIN pg_depend AS d ON d.objid = s.oid AND d.deptype = 'a'
    AND d.classid = 'pg_class'::regclass
LEFT JOIN pg_class AS c ON c.oid = d.refobjid
LEFT JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE n.nspname = 'public' AND s.relkind = 'S'
ORDER BY s.relname
"""

FUNCTIONS = """
SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') RETURNS '
    || pg_get_function_result(p.oid) AS signature
FROM pg_proc AS p
JOIN pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'
ORDER BY signature
"""

TRIGGERS = """
SELECT pg_get_triggerdef(t.oid) AS definition
FROM pg_trigger AS t
JOIN pg_class AS c ON c.oid = t.tgrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND NOT t.tgisinternal
ORDER BY c.relname, t.tgname
"""


def _grouped(rows: list[asyncpg.Record]) -> dict[str, list[asyncpg.Record]]:
    by_owner: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_owner.setdefault(row["owner"], []).append(row)
    return by_owner


def _column(row: asyncpg.Record, width: int) -> str:
    line = f"{row['name']:<{width}} {row['type']}"
    if row["not_null"]:
        line += " NOT NULL"
    if row["default_value"] is not None:
        line += f" DEFAULT {row['default_value']}"
    return line


def _create(kind: str, name: str, columns: list[asyncpg.Record], extra: list[str]) -> str:
    """CREATE TABLE/TYPE: one column a line, names aligned, then the constraints."""
    width = max(len(c["name"]) for c in columns)
    lines = [_column(c, width) for c in columns] + extra
    body = ",\n".join(f"    {line}" for line in lines)
    return f"CREATE {kind} {name}{' AS' if kind == 'TYPE' else ''} (\n{body}\n);"


def _index(definition: str) -> str:
    """An index as PostgreSQL prints it, without the schema name every table here has."""
    return definition.replace(" ON public.", " ON ", 1) + ";"


def _section(title: str, items: list[str]) -> str:
    rule = "-" * max(0, 96 - len(title))
    return f"-- {title} {rule}\n\n" + ("\n\n".join(items) if items else "-- (none)") + "\n"


async def _tables(conn: asyncpg.Connection) -> list[str]:
    constraints = _grouped(await conn.fetch(CONSTRAINTS))
    return [
        _create(
            "TABLE",
            table,
            columns,
            [f"CONSTRAINT {k['name']} {k['definition']}" for k in constraints.get(table, [])],
        )
        for table, columns in _grouped(await conn.fetch(COLUMNS, "r")).items()
    ]


async def _types(conn: asyncpg.Connection) -> list[str]:
    composites = [
        _create("TYPE", name, columns, [])
        for name, columns in _grouped(await conn.fetch(COLUMNS, "c")).items()
    ]
    enums = [
        f"CREATE TYPE {r['name']} AS ENUM ({', '.join(repr(x) for x in r['labels'])});"
        for r in await conn.fetch(ENUMS)
    ]
    return composites + enums


async def _sequences(conn: asyncpg.Connection) -> list[str]:
    return [
        f"CREATE SEQUENCE {r['name']} AS {r['type']}"
        + (f" OWNED BY {r['owner']}.{r['column_name']};" if r["owner"] else ";")
        for r in await conn.fetch(SEQUENCES)
    ]


async def render(conn: asyncpg.Connection) -> str:
    """The schema of the database `conn` is connected to, as schema.sql holds it."""
    sections = [
        _section("Tables", await _tables(conn)),
        _section("Indexes", [_index(r["definition"]) for r in await conn.fetch(INDEXES)]),
        _section("Types", await _types(conn)),
        _section("Sequences", await _sequences(conn)),
        _section("Functions", [f"{r['signature']};" for r in await conn.fetch(FUNCTIONS)]),
        _section("Triggers", [f"{r['definition']};" for r in await conn.fetch(TRIGGERS)]),
    ]
    return HEADER + "\n" + "\n".join(sections)


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def fresh_schema(server_url: str) -> str:
    """Migrates a new, empty database on the server, renders its schema, drops it."""
    name = f"auto_topup_schema_{uuid.uuid4().hex[:8]}"
    admin = await connect(_with_database(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            conn = await connect(_with_database(server_url, name))
            try:
                await migrate(conn)
                return await render(conn)
            finally:
                await conn.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL must name a PostgreSQL server (make env)", file=sys.stderr)
        return 2
    SNAPSHOT.write_text(asyncio.run(fresh_schema(url)), encoding="utf-8")
    print(f"wrote {SNAPSHOT.relative_to(SNAPSHOT.parents[3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
