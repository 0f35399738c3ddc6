"""`make chaos`: the big chaos run. Prints the counts line; exits 1 unless all is well.

python -m tests.chaos [--events 200000] [--customers 20000] [--instances 4] ...
                      [--now 2026-03-10T23:30:00Z]   (what the services' clock reads at start)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import datetime

from tests.chaos.harness import DEFAULT_NOW, Chaos, Config, summary

MISMATCHES_SHOWN = 60  # daily keys described when a run fails


def instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return at


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=2.5)
    parser.add_argument("--min-kills", type=int, default=50)
    parser.add_argument("--balance-seconds", type=float, default=130.0)
    parser.add_argument("--no-restarts", action="store_true")
    parser.add_argument("--stall-seconds", type=float, default=300.0)
    parser.add_argument("--now", type=instant, default=DEFAULT_NOW)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = Config(
            kafka=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            database_url=os.environ["DATABASE_URL"],
            seed=args.seed,
            customers=args.customers,
            events=args.events,
            instances=args.instances,
            kill_every=args.kill_every,
            min_kills=args.min_kills,
            balance_phase_seconds=args.balance_seconds,
            restart_kafka=not args.no_restarts,
            restart_postgres=not args.no_restarts,
            stall_seconds=args.stall_seconds,
            now=args.now,
        )
    except KeyError as missing:
        print(f"{missing.args[0]} is not set: run through `make chaos`", file=sys.stderr)
        return 2
    result = asyncio.run(Chaos(cfg).execute())
    print(summary(result))
    if not result.ok:  # which daily keys, so that a failed run can be looked into
        for line in result.mismatches[:MISMATCHES_SHOWN]:
            print(line, file=sys.stderr)
        if len(result.mismatches) > MISMATCHES_SHOWN:
            print(f"... and {len(result.mismatches) - MISMATCHES_SHOWN} more", file=sys.stderr)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
