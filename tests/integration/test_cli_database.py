"""The `auto-topup` command against PostgreSQL, as a subprocess with a short environment: one
line and a documented exit code for what the database says, and the audited counter resets."""

from __future__ import annotations

import json
import os
import socket
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import CountKey, InputRecord
from tests.cli_tools import CliRun, run_cli_now
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.pg_tools import close_pool, connect, create_pool

TOPICS = Topics()
MAX = 2**63 - 1


def auto_topup(database_url: str, *args: str) -> CliRun:
    """`auto-topup *args` with only these variables in its environment."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": "sk_test_cli_fake",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached: PostgreSQL comes first
        "AUTO_TOPUP_HTTP_PORT": "0",
    }
    return run_cli_now(env, *args, inherit=False)


def _with(url: str, *, user: str | None = None, database: str | None = None, port: int = 0) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    if port:
        netloc = f"{netloc.rpartition(':')[0]}:{port}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def _plain_lines(stderr: str) -> list[str]:
    """stderr without the JSON log lines (what `run` logs before it stops)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- failures: one line, a documented exit code -----------------------------------------------


@pytest.mark.parametrize("command", ["run", "migrate"])
def test_a_dsn_asyncpg_cannot_use_stops_with_one_line(database_url: str, command: str) -> None:
    url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    done = auto_topup(url, command)
    assert done.code == 2
    assert done.err.splitlines() == [
        "configuration error: DATABASE_URL: Value error, must be a postgresql:// or "
        "postgres:// URL, not postgresql+asyncpg://"
    ]


@pytest.mark.parametrize("command", ["run", "migrate"])
@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"user": "no_such_role_at"}, 'role "no_such_role_at" does not exist'),
        ({"database": "no_such_database_at"}, 'database "no_such_database_at" does not exist'),
    ],
    ids=["wrong_user", "missing_database"],
)
def test_a_misconfigured_database_stops_start_up_with_one_line(
    database_url: str, command: str, change: dict[str, str], says: str
) -> None:
    done = auto_topup(_with(database_url, **change), command)  # type: ignore[arg-type]
    assert done.code == 2, done.err
    assert "Traceback" not in done.err
    [line] = _plain_lines(done.err)
    assert line.startswith("configuration error: DATABASE_URL: ")
    assert says in line
    assert "waiting for PostgreSQL" not in done.err


def test_migrate_says_in_one_line_that_postgresql_is_unreachable(database_url: str) -> None:
    done = auto_topup(_with(database_url, port=_free_port()), "migrate")
    assert done.code == 1
    [line] = done.err.splitlines()
    assert line.startswith("error: cannot reach PostgreSQL: ")


def test_migrate_on_a_migrated_database(database_url: str) -> None:
    done = auto_topup(database_url, "migrate")
    assert (done.code, done.out.strip()) == (0, "database is up to date")


# --- a runaway counter, reset by hand ---------------------------------------------------------


async def _apply(database_url: str, topic: str, body: dict[str, object]) -> dict[CountKey, int]:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        handler = BatchHandler(lambda: PgUnitOfWork(pool), lambda: NOW, Policy(), TOPICS)
        record = InputRecord(topic, 0, 0, str(body["customer_id"]).encode(), dumps(body))
        return dict((await handler.handle([record])).counts)
    finally:
        await close_pool(pool)


async def test_reset_sequence_unfreezes_a_wallet(database_url: str) -> None:
    at = NOW - timedelta(hours=2)
    _b = TOPICS.wallet_balance_changed
    await _apply(database_url, TOPICS.settings_updated, settings_wire("cust-r", at=at))
    counts = await _apply(database_url, _b, balance_wire("cust-r", "500", at=at, sequence=MAX))
    assert counts == {
        CountKey.consumed(_b, "applied"): 1
    }  # accepted: the largest sequence the contract allows
    low = balance_wire("cust-r", "5.00", at=at + timedelta(minutes=1), sequence=7)
    assert await _apply(database_url, _b, low) == {CountKey.consumed(_b, "stale"): 1}  # frozen

    done = auto_topup(
        database_url, "admin", "reset-sequence", "cust-r", "--to", "6", "--by", "bob",
        "--why", "INC-42: metering sent 2^63-1",
    )  # fmt: skip
    assert done.code == 0, done.err
    assert done.out.strip() == (
        f"sequence of cust-r reset: {MAX} -> 6 by bob (counter_audit row 1); "
        "events with a sequence above 6 apply again"
    )
    [logged] = [json.loads(line) for line in done.err.splitlines() if "counter_reset" in line]
    assert logged["counter_reset"]["old_value"] == MAX
    assert logged["counter_reset"]["new_value"] == 6
    assert logged["counter_reset"]["reset_by"] == "bob"
    assert logged["counter_reset"]["why"] == "INC-42: metering sent 2^63-1"

    # The same low balance comes again (a new event): the wallet tops up.
    counts = await _apply(database_url, _b, {**low, "event_id": "after-reset"})
    assert counts[CountKey.decision("triggered")] == 1
    conn = await connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM counter_audit")
        assert row is not None
        assert (row["counter"], row["old_value"], row["new_value"], row["reset_by"]) == (
            "sequence",
            MAX,
            6,
            "bob",
        )
        assert row["why"] == "INC-42: metering sent 2^63-1"
        assert row["reset_at"] is not None
        assert await conn.fetchval("SELECT balance_sequence FROM wallets") == 7
    finally:
        await conn.close()


async def test_reset_version_unfreezes_settings(database_url: str) -> None:
    at = NOW - timedelta(hours=2)
    _s = TOPICS.settings_updated
    await _apply(database_url, _s, settings_wire("cust-v", at=at, version=MAX))
    later = settings_wire("cust-v", at=at + timedelta(minutes=1), version=3, auto=False)
    assert await _apply(database_url, _s, later) == {CountKey.consumed(_s, "stale"): 1}
    done = auto_topup(
        database_url, "admin", "reset-version", "cust-v", "--to", "2", "--by", "carol",
        "--why", "runaway version",
    )  # fmt: skip
    assert done.code == 0, done.err
    assert await _apply(database_url, _s, {**later, "event_id": "v3-again"}) == {
        CountKey.consumed(_s, "applied"): 1
    }


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["reset-sequence", "nobody", "--to", "1"], 1, "no wallet of customer 'nobody'"),
        (["reset-sequence", "cust-n", "--to", "1"], 1, "cust-n has seen no sequence"),
        (["reset-version", "cust-n", "--to", "1"], 1, "cust-n has seen no version"),
        (["reset-sequence", "cust-n", "--to", "-1"], 2, "--to"),
        (["reset-sequence", "cust-n", "--to", str(MAX + 1)], 2, "--to"),
        (["reset-sequence", "bad id!", "--to", "1"], 2, "CUSTOMER"),
    ],
)
async def test_reset_refusals(database_url: str, args: list[str], code: int, says: str) -> None:
    # A wallet with a balance but no sequence, and no settings.
    await _apply(database_url, TOPICS.wallet_balance_changed, balance_wire("cust-n", "1", at=NOW))
    done = auto_topup(database_url, "admin", *args, "--by", "dave", "--why", "test")
    assert done.code == code, done.err
    assert says in done.err
    conn = await connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM counter_audit") == 0
    finally:
        await conn.close()
