"""The batch handler alone, in process, on the real PostgreSQL: CPU per event, no Kafka.

    python -m tests.bench.handler [--batch 2000] [--batches 50] [--customers 200000]

Loads settings for the customers, then applies batches of plain balance events (0.1% cross
the threshold) in a random customer order, and prints wall and CPU time per batch and per event.
It isolates the service's own work (decode, lock, rules, write) from the consumer's, to compare
changes to the pipeline; `make bench` measures the whole service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service.adapters.postgres.migrate import migrate
from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.rules import Policy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord


def _db(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def _settings(topics: Topics, customers: int) -> list[InputRecord]:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    records = []
    for i in range(customers):
        cid = f"c{i}"
        body = {
            "event_id": f"s-{cid}",
            "occurred_at": at,
            "customer_id": cid,
            "origin": "finance_app",
            "payment_method": "cheque_tt",
            "auto_trigger": True,
            "trigger_amount": "100.00",
            "limit_threshold": "10.00",
            "currency": "USD",
        }
        records.append(
            InputRecord(topics.settings_updated, 0, i, cid.encode(), json.dumps(body).encode())
        )
    return records


def _balances(topics: Topics, customers: int, size: int, count: int) -> list[list[InputRecord]]:
    order = list(range(customers))
    random.Random(1).shuffle(order)
    base = datetime.now(UTC) - timedelta(minutes=30)
    batches = []
    n = 0
    for _ in range(count):
        batch = []
        for _ in range(size):
            cid = f"c{order[n % customers]}"
            body = {
                "event_id": f"e{n}",
                "occurred_at": (base + timedelta(microseconds=n)).isoformat(),
                "customer_id": cid,
                "currency": "USD",
                "balance": "5.00" if n % 1000 == 7 else f"{500 + n % 97}.25",
                "sequence": n // customers + 1,
            }
            batch.append(
                InputRecord(
                    topics.wallet_balance_changed, 0, n, cid.encode(), json.dumps(body).encode()
                )
            )
            n += 1
        batches.append(batch)
    return batches


async def main(args: argparse.Namespace) -> None:
    server = os.environ["DATABASE_URL"]
    name = f"auto_topup_handler_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_db(server, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(_db(server, name))
        await migrate(conn)
        await conn.close()
        pool = await asyncpg.create_pool(_db(server, name), min_size=1, max_size=2)
        topics = Topics()
        handler = BatchHandler(
            lambda: PgUnitOfWork(pool), lambda: datetime.now(UTC), Policy(), topics
        )
        settings = _settings(topics, args.customers)
        for start in range(0, len(settings), 2000):
            await handler.handle(settings[start : start + 2000])
        batches = _balances(topics, args.customers, args.batch, args.batches)
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            await handler.handle(batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        events = args.batch * args.batches
        print(
            f"handler: batch={args.batch} batches={args.batches} customers={args.customers:,}: "
            f"{wall / args.batches * 1000:.1f} ms/batch wall, "
            f"{cpu / args.batches * 1000:.1f} ms/batch cpu, {events / wall:,.0f} events/s, "
            f"{cpu / events * 1e6:.1f} us cpu/event"
        )
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.handler")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--customers", type=int, default=200_000)
    asyncio.run(main(parser.parse_args()))
