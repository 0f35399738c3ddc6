"""`make replay-memory`: `auto-topup replay` over 1,000,000 records without `--report` stays
under 200 MB of memory (its peak resident set, read from the kernel when it exits).

    python -m tests.bench.replay_memory [--records 1000000] [--customers 1000] [--limit-mb 200]
                                        [--with-report]

The records are balance events of a few customers, every one below its Limit Threshold: the
first of each customer's day triggers an invoice request, every other one is a decision the
replay reports ('suppressed', one top-up a day), so that memory kept per decision would grow
with the records. `--with-report` runs a second replay that writes the report, for comparison
(it keeps every decision, by design). The service's clock is pinned to 10:00 UTC of today or
yesterday, and every event dated from it: the run does not depend on the hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import urlsplit, urlunsplit

from tests.bench.backlog import drop, fill
from tests.cli_tools import cli_command
from tests.kafka_tools import ensure_topics
from tests.pg_tools import connect
from tests.service_process import Topics

PARTITIONS = 3
# One replay of the whole backlog: a million records at a few thousand a second on a slow
# machine, with room to spare. The replay's own waits (Kafka, PostgreSQL) are its --wait.
REPLAY_SECONDS = 3600.0


@dataclass(frozen=True)
class Measured:
    seconds: float
    max_rss_mb: float
    out: str


def pinned_now(host: datetime) -> datetime:
    """10:00 UTC of today, or of yesterday before 10:00: far from any UTC day's end."""
    at = datetime.combine(host.date(), clock_time(10), UTC)
    return at if at <= host else at - timedelta(days=1)


def settings_messages(prefix: str, customers: int, at: datetime) -> Iterator[tuple[bytes, bytes]]:
    for i in range(customers):
        cid = f"{prefix}{i}"
        body = {
            "event_id": f"s-{cid}",
            "occurred_at": at.isoformat(),
            "customer_id": cid,
            "origin": "finance_app",
            "payment_method": "cheque_tt",
            "auto_trigger": True,
            "trigger_amount": "100.00",
            "limit_threshold": "10.00",
            "currency": "USD",
        }
        yield cid.encode(), json.dumps(body).encode()


def balance_messages(
    prefix: str, customers: int, records: int, start: datetime
) -> Iterator[tuple[bytes, bytes]]:
    for n in range(records):
        cid = f"{prefix}{n % customers}"
        body = {
            "event_id": f"e-{prefix}{n}",
            "occurred_at": (start + timedelta(microseconds=n)).isoformat(),
            "customer_id": cid,
            "currency": "USD",
            "balance": "5.00",
            "sequence": n // customers + 1,
        }
        yield cid.encode(), json.dumps(body).encode()


def run_replay(env: dict[str, str], *args: str) -> Measured:
    """Runs `auto-topup replay` to its end; its peak RSS from the kernel (wait4's rusage)."""
    started = time.monotonic()
    with TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp, "out"), Path(tmp, "err")
        with out_path.open("w") as out, err_path.open("w") as err:
            proc = subprocess.Popen(
                cli_command("replay", *args),
                env={**os.environ, **env, "COLUMNS": "200"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
            deadline = started + REPLAY_SECONDS
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    raise TimeoutError(f"replay still running after {REPLAY_SECONDS:.0f} s")
                time.sleep(0.5)  # polling the process for its end, with a deadline
            proc.returncode = os.waitstatus_to_exitcode(status)
        text = out_path.read_text()
        if proc.returncode != 0:
            raise RuntimeError(f"replay exited {proc.returncode}:\n{text}\n{err_path.read_text()}")
    return Measured(time.monotonic() - started, usage.ru_maxrss / 1024, text)


async def main(args: argparse.Namespace) -> int:
    bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    topics = Topics()
    database = f"auto_topup_replaymem_{topics.suffix}"
    admin = await connect(urlunsplit(urlsplit(server)._replace(path="/postgres")))
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    host = datetime.now(UTC)
    now = pinned_now(host)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": urlunsplit(urlsplit(server)._replace(path=f"/{database}")),
        "STRIPE_API_KEY": "sk_test_replay_memory_fake",
        "AUTO_TOPUP_CONSUMER_GROUP": f"replaymem-{topics.suffix}",
        "AUTO_TOPUP_TOPIC_PARTITIONS": str(PARTITIONS),
        "AUTO_TOPUP_CLOCK_OFFSET_SECONDS": repr((now - host).total_seconds()),
        "AUTO_TOPUP_LOG_LEVEL": "WARNING",
        **topics.env(),
    }
    names = list(topics.env().values())
    try:
        await ensure_topics(bootstrap, names, PARTITIONS)
        prefix = f"rm{topics.suffix}-"
        print(
            f"replay-memory: filling {args.customers:,} settings and {args.records:,} balance "
            "events ...",
            flush=True,
        )
        await fill(
            bootstrap,
            topics["SETTINGS_UPDATED"],
            settings_messages(prefix, args.customers, now - timedelta(hours=2)),
        )
        await fill(
            bootstrap,
            topics["WALLET_BALANCE_CHANGED"],
            balance_messages(prefix, args.customers, args.records, now - timedelta(hours=1)),
        )
        since = (now - timedelta(hours=3)).isoformat()
        plain = await asyncio.to_thread(run_replay, env, "--from", since, "--wait", "120")
        total = args.records + args.customers
        if f"records: {total}" not in plain.out:
            raise RuntimeError(f"the replay did not read all {total} records:\n{plain.out}")
        print(plain.out, end="", flush=True)
        verdict = "ok" if plain.max_rss_mb < args.limit_mb else "TOO MUCH"
        print(
            f"replay of {total:,} records without --report: peak RSS {plain.max_rss_mb:.0f} MB "
            f"(limit {args.limit_mb:.0f} MB: {verdict}) in {plain.seconds:.0f} s",
            flush=True,
        )
        if args.with_report:
            with TemporaryDirectory() as tmp:
                report = Path(tmp, "report.csv")
                kept = await asyncio.to_thread(
                    run_replay, env, "--from", since, "--wait", "120", "--report", str(report)
                )
            print(
                f"the same with --report (keeps every decision): peak RSS "
                f"{kept.max_rss_mb:.0f} MB in {kept.seconds:.0f} s",
                flush=True,
            )
        return 0 if plain.max_rss_mb < args.limit_mb else 1
    finally:
        await drop(bootstrap, server, database, names)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--limit-mb", type=float, default=200.0)
    parser.add_argument("--with-report", action="store_true")
    sys.exit(asyncio.run(main(parser.parse_args())))
