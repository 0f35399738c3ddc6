"""Retention on a real PostgreSQL (service/service_layer/retention.py, migration 0009): what
is past each horizon goes, what is inside stays, what the charger or the relay still needs stays
whatever its age; batches; two pruners at once; the indexes; the metrics and the alert.

Every row is dated from NOW, a fixed instant, and every run prunes at an instant chosen from it:
nothing depends on the host's clock.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import yaml

from service.adapters.postgres.retention import (
    LOCK_ID,
    PgRetentionStore,
    connect_retention_store,
    oldest_prunable,
    retention_store,
)
from service.adapters.postgres.sql import q
from service.entrypoints.metrics import Metrics
from service.service_layer.retention import (
    DAILY_KEYS,
    OUTBOX_DEAD_LETTERS,
    OUTBOX_EVENTS,
    TARGETS,
    Pruner,
    PruneReport,
    Retention,
    prune,
)
from tests.pg_tools import PG_QUERY_SECONDS, connect

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
# Every horizon set, audit rows too (their default keeps them for ever).
RETENTION = Retention(
    daily_keys_days=35,
    outbox_events_days=7,
    dead_letters_days=14,
    decision_summary_days=400,
    audit_days=400,
    batch_size=1000,
)


# ---------------------------------------------------------------- rows, dated as a test says


async def add_key(conn: asyncpg.Connection, customer: str, day: date, phase: str = "done") -> None:
    await conn.execute(
        "INSERT INTO daily_keys (customer_id, business_date, payment_method, amount, currency,"
        " trigger_event_id, balance_at_trigger, limit_threshold, phase, result)"
        " VALUES ($1, $2, 'cheque_tt', 100, 'USD', 'e1', 5, 10, $3, $4)",
        customer,
        day,
        phase,
        "invoice_requested" if phase == "done" else None,
    )


async def add_outbox(
    conn: asyncpg.Connection,
    dedupe_key: str,
    *,
    published: datetime | None = None,
    set_aside: datetime | None = None,
    created: datetime | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO outbox (dedupe_key, topic, key, value, created_at, published_at,"
        " set_aside_at) VALUES ($1, 'some-topic', 'k', 'v', $2, $3, $4)",
        dedupe_key,
        created or published or set_aside or NOW,
        published,
        set_aside,
    )


def dlq(n: int) -> str:
    return f"dlq/wallet-balance-changed/0/{n}/{'ab' * 32}"


async def add_decision(conn: asyncpg.Connection, customer: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO decision_summary (customer_id, outcome, reason, last_at, last_topic,"
        " last_partition, last_offset) VALUES ($1, 'blocked', 'auto_trigger_off', $2, 't', 0, 1)",
        customer,
        at,
    )


async def add_audits(conn: asyncpg.Connection, customer: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO charge_audit (customer_id, business_date, daily_key, old_phase, decision,"
        " event_id, resolved_by, why, resolved_at)"
        " VALUES ($1, $2, $3, 'needs_review', 'failed', 'ev', 'alice', 'why', $4)",
        customer,
        at.date(),
        f"{customer}/{at.date()}",
        at,
    )
    await conn.execute(
        "INSERT INTO counter_audit (customer_id, counter, old_value, new_value, reset_by, why,"
        " reset_at) VALUES ($1, 'sequence', 99, 1, 'alice', 'why', $2)",
        customer,
        at,
    )


async def add_invoice(conn: asyncpg.Connection, invoice_id: str, closed: datetime | None) -> None:
    """An invoice requested long ago, closed at `closed` (None: still open)."""
    await conn.execute(
        "INSERT INTO open_invoices (invoice_request_id, customer_id, business_date, amount,"
        " currency, requested_at, status, closed_at)"
        " VALUES ($1, 'cust-inv', '2020-01-01', 100, 'USD', $2, $3, $4)",
        invoice_id,
        NOW - 3650 * DAY,
        "requested" if closed is None else "paid",
        closed,
    )


async def remaining(conn: asyncpg.Connection) -> dict[str, set[str]]:
    keys = await conn.fetch("SELECT customer_id, business_date FROM daily_keys")
    return {
        "daily_keys": {f"{r['customer_id']}/{r['business_date']}" for r in keys},
        "outbox": set(
            await conn.fetchval("SELECT coalesce(array_agg(dedupe_key), '{}') FROM outbox")
        ),
        "decision_summary": set(
            await conn.fetchval(
                "SELECT coalesce(array_agg(customer_id), '{}') FROM decision_summary"
            )
        ),
        "charge_audit": set(
            await conn.fetchval("SELECT coalesce(array_agg(customer_id), '{}') FROM charge_audit")
        ),
        "counter_audit": set(
            await conn.fetchval("SELECT coalesce(array_agg(customer_id), '{}') FROM counter_audit")
        ),
        "open_invoices": set(
            await conn.fetchval(
                "SELECT coalesce(array_agg(invoice_request_id), '{}') FROM open_invoices"
            )
        ),
    }


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(database_url)
    try:
        yield c
    finally:
        await c.close()


async def run(
    conn: asyncpg.Connection, retention: Retention, now: datetime, **kw: object
) -> dict[str, int]:
    async with retention_store(conn) as store:
        report = await prune(store, retention, now, **kw)  # type: ignore[arg-type]
    assert not report.busy
    return report.counts


# ---------------------------------------------------------------- horizons


async def test_each_horizon_prunes_what_is_past_it_and_keeps_the_rest(
    conn: asyncpg.Connection, database_url: str
) -> None:
    first_kept = (NOW - 35 * DAY).date()  # 2026-02-03
    # daily keys: by business date, settled ones only
    await add_key(conn, "key-old", first_kept - DAY)
    await add_key(conn, "key-kept", first_kept)
    await add_key(conn, "key-today", NOW.date())
    ancient = date(2024, 1, 1)
    for phase in ("claimed", "charging", "needs_review"):  # the charger's, an operator's
        await add_key(conn, f"key-{phase}", ancient, phase)
    # outbox: output events (7 days) and dead letters (14 days), from publication
    await add_outbox(conn, "event-old", published=NOW - 7 * DAY - SECOND)
    await add_outbox(conn, "event-at-horizon", published=NOW - 7 * DAY)
    await add_outbox(conn, "event-recent", published=NOW - DAY)
    await add_outbox(conn, "event-unpublished", created=NOW - 900 * DAY)
    await add_outbox(conn, "event-set-aside", set_aside=NOW - 900 * DAY)
    await add_outbox(conn, dlq(1), published=NOW - 14 * DAY - SECOND)
    await add_outbox(conn, dlq(2), published=NOW - 14 * DAY)
    await add_outbox(conn, dlq(3), published=NOW - 8 * DAY)  # past an event's horizon, kept
    await add_outbox(conn, dlq(4), created=NOW - 900 * DAY)
    await add_outbox(conn, dlq(5), set_aside=NOW - 900 * DAY)
    # decision summary and audit rows: 400 days
    await add_decision(conn, "decision-old", NOW - 400 * DAY - SECOND)
    await add_decision(conn, "decision-kept", NOW - 400 * DAY)
    await add_audits(conn, "audit-old", NOW - 400 * DAY - SECOND)
    await add_audits(conn, "audit-kept", NOW - 400 * DAY)
    # closed invoices: as long as daily keys (35 days), from the close; open ones for ever
    await add_invoice(conn, "invoice-old", NOW - 35 * DAY - SECOND)
    await add_invoice(conn, "invoice-kept", NOW - 35 * DAY)
    await add_invoice(conn, "invoice-open", None)

    dry = await run(conn, RETENTION, NOW, dry_run=True)
    assert dry == {
        "daily_keys": 1,
        "outbox_events": 1,
        "outbox_dead_letters": 1,
        "decision_summary": 1,
        "charge_audit": 1,
        "counter_audit": 1,
        "customer_history": 0,  # none written here (tests/integration/test_customer_history.py)
        "open_invoices": 1,
    }
    before = await remaining(conn)
    assert "key-old/" + str(first_kept - DAY) in before["daily_keys"]  # the dry run deleted none

    assert await run(conn, RETENTION, NOW) == dry
    assert await remaining(conn) == {
        "daily_keys": {
            f"key-kept/{first_kept}",
            f"key-today/{NOW.date()}",
            f"key-claimed/{ancient}",
            f"key-charging/{ancient}",
            f"key-needs_review/{ancient}",
        },
        "outbox": {
            "event-at-horizon",
            "event-recent",
            "event-unpublished",
            "event-set-aside",
            dlq(2),
            dlq(3),
            dlq(4),
            dlq(5),
        },
        "decision_summary": {"decision-kept"},
        "charge_audit": {"audit-kept"},
        "counter_audit": {"audit-kept"},
        "open_invoices": {"invoice-kept", "invoice-open"},
    }
    # Again at the same instant: nothing more.
    assert sum((await run(conn, RETENTION, NOW)).values()) == 0

    # Ten years on, everything settled or published goes; what is not, stays.
    later = NOW + 3650 * DAY
    await run(conn, RETENTION, later)
    assert await remaining(conn) == {
        "daily_keys": {
            f"key-claimed/{ancient}",
            f"key-charging/{ancient}",
            f"key-needs_review/{ancient}",
        },
        "outbox": {"event-unpublished", "event-set-aside", dlq(4), dlq(5)},
        "decision_summary": set(),
        "charge_audit": set(),
        "counter_audit": set(),
        "open_invoices": {"invoice-open"},
    }


async def test_the_defaults_keep_audit_rows_for_ever(conn: asyncpg.Connection) -> None:
    await add_audits(conn, "audit-ancient", NOW - 3650 * DAY)
    await add_decision(conn, "decision-ancient", NOW - 3650 * DAY)
    counts = await run(conn, Retention(), NOW)
    assert counts["charge_audit"] == counts["counter_audit"] == 0
    assert counts["decision_summary"] == 1
    left = await remaining(conn)
    assert left["charge_audit"] == left["counter_audit"] == {"audit-ancient"}


async def test_daily_keys_are_pruned_by_utc_date_of_the_services_clock(
    conn: asyncpg.Connection,
) -> None:
    """The horizon moves at 00:00 UTC of the service's clock, whatever its time zone says."""
    retention = Retention(daily_keys_days=4)
    await add_key(conn, "c", date(2026, 3, 5))
    just_before = datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)
    assert (await run(conn, retention, just_before))[DAILY_KEYS] == 0
    # The same instant, written in another offset, is the same instant.
    east = just_before.astimezone(datetime.fromisoformat("2026-01-01T00:00:00+14:00").tzinfo)
    assert (await run(conn, retention, east))[DAILY_KEYS] == 0
    assert (await run(conn, retention, just_before + SECOND))[DAILY_KEYS] == 1


# ---------------------------------------------------------------- batches, two pruners


async def test_batches_go_on_until_one_finds_fewer_rows_than_its_size(
    conn: asyncpg.Connection,
) -> None:
    old = NOW - 30 * DAY
    await conn.executemany(
        "INSERT INTO outbox (dedupe_key, topic, published_at) VALUES ($1, 't', $2)",
        [(f"event-{n}", old + n * SECOND) for n in range(50)],
    )
    batches: list[tuple[str, int]] = []
    retention = Retention(batch_size=7)
    async with retention_store(conn) as store:
        report = await prune(store, retention, NOW, on_batch=lambda t, n: batches.append((t, n)))
    assert report.counts[OUTBOX_EVENTS] == 50
    assert batches == [(OUTBOX_EVENTS, 7)] * 7 + [(OUTBOX_EVENTS, 1)]
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_pruner_stops_between_batches_when_asked(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        "INSERT INTO outbox (dedupe_key, topic, published_at) VALUES ($1, 't', $2)",
        [(f"event-{n}", NOW - 30 * DAY) for n in range(20)],
    )
    batches: list[int] = []
    async with retention_store(conn) as store:
        report = await prune(
            store,
            Retention(batch_size=5),
            NOW,
            on_batch=lambda _, n: batches.append(n),
            stopping=lambda: len(batches) >= 2,
        )
    assert report.stopped
    assert report.counts[OUTBOX_EVENTS] == 10  # two batches, then it stopped
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 10


class LocklessStore(PgRetentionStore):
    """A pruner that ignores the lock: what two pruners at once do at worst."""

    async def try_lock(self, wait_seconds: float = 0.0) -> bool:
        return True

    async def unlock(self) -> None:
        return None


async def seed_many(conn: asyncpg.Connection, n: int) -> None:
    old = NOW - 400 * DAY
    await conn.executemany(
        "INSERT INTO outbox (dedupe_key, topic, published_at) VALUES ($1, 't', $2)",
        [(f"event-{i}", old) for i in range(n)] + [(dlq(i), old) for i in range(n)],
    )
    await conn.executemany(
        "INSERT INTO daily_keys (customer_id, business_date, payment_method, amount, currency,"
        " trigger_event_id, balance_at_trigger, limit_threshold, phase, result)"
        " VALUES ($1, $2, 'cheque_tt', 1, 'USD', 'e', 0, 1, 'done', 'invoice_requested')",
        [(f"c-{i}", date(2025, 1, 1)) for i in range(n)],
    )


async def test_two_pruners_without_the_lock_never_delete_a_row_twice_nor_fail(
    database_url: str, conn: asyncpg.Connection
) -> None:
    n = 600
    await seed_many(conn, n)
    retention = Retention(batch_size=25)

    async def one() -> dict[str, int]:
        c = await connect(database_url)
        try:
            return (await prune(LocklessStore(c), retention, NOW)).counts
        finally:
            await c.close()

    first, second = await asyncio.gather(one(), one())
    for target in (DAILY_KEYS, OUTBOX_EVENTS, OUTBOX_DEAD_LETTERS):
        assert first[target] + second[target] == n, target
    assert first[OUTBOX_EVENTS]
    assert second[OUTBOX_EVENTS]
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    assert await conn.fetchval("SELECT count(*) FROM daily_keys") == 0


async def test_with_the_lock_one_pruner_runs_and_the_others_skip(
    database_url: str, conn: asyncpg.Connection
) -> None:
    n = 300
    await seed_many(conn, n)
    open_store = connect_retention_store(database_url)
    pruners = [
        Pruner(open_store, Retention(batch_size=10), lambda: NOW, interval=0) for _ in range(3)
    ]
    reports = await asyncio.gather(*(p.run_once() for p in pruners))
    assert sum(r.counts[OUTBOX_EVENTS] for r in reports) == n
    assert sum(r.counts[DAILY_KEYS] for r in reports) == n
    assert any(not r.busy for r in reports)
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_the_lock_is_waited_for_within_a_bound(
    database_url: str, conn: asyncpg.Connection
) -> None:
    assert await conn.fetchval(q("retention_try_lock"), LOCK_ID)  # another pruner holds it
    other = await connect(database_url)
    try:
        async with retention_store(other) as store:
            assert not await store.try_lock(0)
            assert not await store.try_lock(0.2)  # waited, in PostgreSQL, then gave up
            report = await prune(store, RETENTION, NOW, lock_wait_seconds=0.2)
            assert report.busy
            assert report.total == 0
            await conn.fetchval(q("retention_unlock"), LOCK_ID)
            assert await store.try_lock(PG_QUERY_SECONDS)
            # and the session's lock_timeout is back to the pruner's own
            assert await other.fetchval("SHOW lock_timeout") == "5s"
    finally:
        await other.close()
    # retention_store let go of it: anyone may take it now.
    assert await conn.fetchval(q("retention_try_lock"), LOCK_ID)


async def test_a_batch_does_not_wait_for_rows_another_transaction_holds(
    database_url: str, conn: asyncpg.Connection
) -> None:
    """SKIP LOCKED: a row locked by someone else (here, a transaction that updates it) is
    skipped, not waited for; the next run takes it."""
    await add_outbox(conn, "event-busy", published=NOW - 30 * DAY)
    await add_outbox(conn, "event-free", published=NOW - 30 * DAY)
    holder = await connect(database_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM outbox WHERE dedupe_key = 'event-busy' FOR UPDATE")
        assert (await run(conn, RETENTION, NOW))[OUTBOX_EVENTS] == 1
        await tx.rollback()
    finally:
        await holder.close()
    assert (await run(conn, RETENTION, NOW))[OUTBOX_EVENTS] == 1


# ---------------------------------------------------------------- indexes


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("prune_daily_keys", "daily_keys_done_by_date"),
        ("prune_outbox_events", "outbox_events_published"),
        ("prune_outbox_dead_letters", "outbox_dead_letters_published"),
        ("prune_decision_summary", "decision_summary_last_at"),
        ("prune_charge_audit", "charge_audit_resolved_at"),
        ("prune_counter_audit", "counter_audit_reset_at"),
        ("prune_open_invoices", "open_invoices_closed"),
    ],
)
async def test_each_batch_finds_its_rows_through_an_index(
    conn: asyncpg.Connection, query: str, index: str
) -> None:
    await conn.execute("SET enable_seqscan = off")  # tiny tables: show that the index can serve
    horizon: date | datetime = NOW.date() if query == "prune_daily_keys" else NOW
    lines = [r["QUERY PLAN"] for r in await conn.fetch(f"EXPLAIN {q(query)}", horizon, 10)]
    assert any(index in line for line in lines), "\n".join(lines)
    assert not any("Seq Scan" in line for line in lines), "\n".join(lines)


async def test_the_gauge_query_uses_the_indexes(conn: asyncpg.Connection) -> None:
    await conn.execute("SET enable_seqscan = off")
    args = [NOW.date(), *[NOW] * (len(TARGETS) - 1)]
    lines = [r["QUERY PLAN"] for r in await conn.fetch(f"EXPLAIN {q('retention_oldest')}", *args)]
    assert not any("Seq Scan" in line for line in lines), "\n".join(lines)


# ---------------------------------------------------------------- metrics and the alert


def alert_threshold_seconds() -> float:
    """The threshold of the alert on pruning that falls behind, as deploy/ says it."""
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"][0]["rules"]
    (rule,) = [r for r in rules if "auto_topup_retention_oldest_prunable_age_seconds" in r["expr"]]
    match = re.search(r">\s*([0-9.e+]+)", rule["expr"])
    assert match, rule["expr"]
    return float(match.group(1))


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def test_the_metrics_show_pruning_falling_behind_and_catching_up(
    database_url: str, pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    clock_at = [NOW]
    retention = Retention()  # the defaults: outputs 7 days, dead letters 21
    metrics = Metrics()
    metrics.retention.watch(pool, lambda: clock_at[0], retention)

    async def scrape() -> None:
        await metrics.render(_nothing)

    await scrape()
    for target in TARGETS:
        assert (
            sample(metrics, "auto_topup_retention_oldest_prunable_age_seconds", table=target) == 0
        )

    # An output published 8 days ago: past its 7 days by one day. Nobody prunes: the gauge
    # shows how long, and the alert's threshold is passed.
    await add_outbox(conn, "event-1", published=NOW - 8 * DAY)
    await add_key(conn, "c", (NOW - 36 * DAY).date())  # prunable from 00:00 UTC today
    await add_outbox(conn, "event-unpublished", created=NOW - 900 * DAY)  # never counts
    await scrape()
    behind = sample(
        metrics, "auto_topup_retention_oldest_prunable_age_seconds", table=OUTBOX_EVENTS
    )
    assert behind == DAY.total_seconds()
    assert behind > alert_threshold_seconds()
    assert (
        sample(metrics, "auto_topup_retention_oldest_prunable_age_seconds", table=DAILY_KEYS)
        == 12 * 3600
    )  # NOW is 12:00 UTC
    rows = await oldest_prunable(pool, retention.horizons(NOW))
    assert rows[OUTBOX_EVENTS] == NOW - 8 * DAY
    assert rows[DAILY_KEYS] == (NOW - 36 * DAY).date()

    # The service's pruner runs (first at once): the counter, the last run, the gauge back to 0.
    ran = asyncio.Event()

    def finished(report: PruneReport) -> None:
        metrics.retention.run_finished(report)
        ran.set()

    pruner = Pruner(
        connect_retention_store(database_url),
        retention,
        lambda: clock_at[0],
        interval=3600,
        on_batch=metrics.retention.batch_pruned,
        on_run=finished,
    )
    pruner.start()
    try:
        await asyncio.wait_for(ran.wait(), PG_QUERY_SECONDS)
    finally:
        await pruner.stop(PG_QUERY_SECONDS)
    await scrape()
    assert sample(metrics, "auto_topup_retention_rows_pruned_total", table=OUTBOX_EVENTS) == 1
    assert sample(metrics, "auto_topup_retention_rows_pruned_total", table=DAILY_KEYS) == 1
    assert sample(metrics, "auto_topup_retention_last_run_timestamp_seconds") > 0
    for target in TARGETS:
        assert (
            sample(metrics, "auto_topup_retention_oldest_prunable_age_seconds", table=target) == 0
        )
    assert (await remaining(conn))["outbox"] == {"event-unpublished"}


async def _nothing() -> None:
    return None


async def test_a_failing_run_is_logged_and_the_loop_goes_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []
    failed = asyncio.Event()

    def broken() -> AbstractAsyncContextManager[PgRetentionStore]:
        attempts.append(1)
        failed.set()
        return _refuse()

    pruner = Pruner(broken, Retention(), lambda: NOW, interval=3600)
    pruner.start()
    await asyncio.wait_for(failed.wait(), PG_QUERY_SECONDS)
    await pruner.stop(PG_QUERY_SECONDS)
    assert attempts == [1]
    assert "retention: run failed: OSError: no database" in caplog.text


@asynccontextmanager
async def _refuse() -> AsyncIterator[PgRetentionStore]:
    raise OSError("no database")
    yield  # pragma: no cover
