"""The batch handler alone, in process, on the real PostgreSQL: CPU per event, no Kafka.

    python -m tests.bench.handler [--batch 2000] [--batches 50] [--customers 200000]
                                  [--profile handler.prof]

Loads the settings of `make bench`'s customers, then applies batches of its balance events
(0.1% cross the threshold) in its random customer order, and prints wall and CPU time per
batch and per event.
It isolates the service's own work (decode, lock, rules, write) from the consumer's, to compare
changes to the pipeline; `make bench` measures the whole service.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from service.adapters.postgres.migrate import migrate
from service.adapters.postgres.store import PgUnitOfWork
from service.config import Topics
from service.domain.rules import Policy
from service.entrypoints.gc_policy import GcPolicy
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord
from tests.bench.__main__ import balance_messages, settings_messages
from tests.pg_tools import close_pool, connect, create_pool


def _db(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def _records(topic: str, messages: Iterable[tuple[bytes, bytes]]) -> list[InputRecord]:
    return [InputRecord(topic, 0, n, key, value) for n, (key, value) in enumerate(messages)]


async def main(args: argparse.Namespace) -> None:
    server = os.environ["DATABASE_URL"]
    name = f"auto_topup_handler_bench_{uuid.uuid4().hex[:8]}"
    admin = await connect(_db(server, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await connect(_db(server, name))
        await migrate(conn)
        await conn.close()
        pool = await create_pool(_db(server, name), min_size=1, max_size=2)
        topics = Topics()
        handler = BatchHandler(
            lambda: PgUnitOfWork(pool), lambda: datetime.now(UTC), Policy(), topics
        )
        # The same customers and events as `make bench` (a card that is never charged here).
        settings = _records(
            topics.settings_updated,
            settings_messages("c", args.customers, ("cus_bench", "pm_bench"), "partner"),
        )
        for start in range(0, len(settings), 2000):
            await handler.handle(settings[start : start + 2000])
        events = args.batch * args.batches
        balances = _records(
            topics.wallet_balance_changed, balance_messages("c", args.customers, events)
        )
        batches = [balances[i : i + args.batch] for i in range(0, events, args.batch)]
        # The service's GC policy (bootstrap.started): the loaded state frozen, older
        # generations collected between batches only.
        gc.collect()
        gc.freeze()
        policy = GcPolicy().install()
        profile = cProfile.Profile() if args.profile else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profile is not None:
            profile.enable()
        for batch in batches:
            await handler.handle(batch)
            policy.between_batches()
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"handler: batch={args.batch} batches={args.batches} customers={args.customers:,}: "
            f"{wall / args.batches * 1000:.1f} ms/batch wall, "
            f"{cpu / args.batches * 1000:.1f} ms/batch cpu, {events / wall:,.0f} events/s, "
            f"{cpu / events * 1e6:.1f} us cpu/event"
        )
        await close_pool(pool)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.handler")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--profile", help="write a cProfile of the batches to this file")
    asyncio.run(main(parser.parse_args()))
