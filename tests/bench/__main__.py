"""`make bench`: the service against a raw aiokafka passthrough, every figure in one run.

1. baseline P: a plain aiokafka passthrough over the same pre-filled backlog;
2. the service draining 1,000,000 balance events over 1,000,000 customers with settings
   (about 0.1% cross the threshold; cheque, master account and Stripe);
3. latency at half the measured saturation rate, open loop (1% of events cause an invoice);
   then the passthrough's, live on fresh topics under the same generator at the same rate
   (the same 1% tracked, to their copies), and the ratio of the two p99s;
4. the service's memory growth per customer, its longest GC pause and the median time it takes
   to apply a batch (both measured inside it), and the ratio of the two;
5. throughput at 10,000 customers, and the ratio of the two.
The table goes to stdout; the same figures to bench-results/bench.json, and the latency
distribution to bench-results/latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.config import Settings
from tests.bench.backlog import drop, fill
from tests.bench.latency import event_id_of, events_in, open_loop, percentile, trigger_of
from tests.bench.line import align_floor, bench_line, figures
from tests.bench.passthrough import Passthrough
from tests.bench.plot import latency_png
from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS, STALL_SECONDS
from tests.pg_tools import connect
from tests.service_process import ServiceProcess, Topics
from tests.stripe_tools import GOOD, saved_card

PARTITIONS = 6
RESULTS = Path("bench-results")


def _db(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


async def lag(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await admin.start()
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(parts)
        done = await admin.list_consumer_group_offsets(group)
        return sum(ends[tp] - (done[tp].offset if tp in done else 0) for tp in parts)
    finally:
        await consumer.stop()
        await admin.close()


async def wait_drained(bootstrap: str, group: str, topic: str) -> float:
    """Until the group has committed the whole topic; returns when. However long that takes
    (the backlog is as large as the run asks), it waits while the lag goes down, and fails
    after STALL_SECONDS without progress."""
    fewest, progress_at = None, time.monotonic()
    while (left := await lag(bootstrap, group, topic)) > 0:
        if fewest is None or left < fewest:
            fewest, progress_at = left, time.monotonic()
        elif time.monotonic() - progress_at > STALL_SECONDS:
            raise TimeoutError(
                f"{group} made no progress on {topic} for {STALL_SECONDS}s ({left} records left)"
            )
        await asyncio.sleep(0.25)  # polling a condition, with a deadline
    return time.monotonic()


async def passthrough(bootstrap: str, source: str, dest: str, group: str, events: int) -> float:
    """Baseline P over the backlog: tests.bench.passthrough in a process of its own; returns
    its events/s."""
    proc = Passthrough(bootstrap, source, dest, group, events)
    await proc.start()
    return await proc.finish()


async def passthrough_latency(
    bootstrap: str, source: str, dest: str, group: str, generator: dict[str, Any]
) -> list[float]:
    """The passthrough live, on fresh topics, under the same open-loop generator as the
    service (`generator`: open_loop's arguments but the topics): from each tracked event's
    scheduled send to its copy's broker timestamp."""
    proc = Passthrough(
        bootstrap, source, dest, group, events_in(generator["rate"], generator["seconds"])
    )
    await proc.start()
    try:
        await proc.ready()
        latencies = await open_loop(bootstrap, source, dest, names_input=event_id_of, **generator)
    finally:
        # Not `finish()`: the samples are in, and a copy run need not see every record it was
        # told to count (a send refused while a fresh topic elects its leaders is not retried
        # by the open-loop generator; the samples are the events that came).
        await proc.kill()
    return latencies


def _latency(key: str, latencies: list[float]) -> dict[str, Any]:
    """`{key}p50_ms` ... and `{key}latency_samples` (no percentile without a sample)."""
    result: dict[str, Any] = {f"{key}latency_samples": len(latencies)}
    if latencies:
        for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
            result[f"{key}{name}_ms"] = percentile(latencies, q)
    return result


def settings_messages(
    prefix: str, customers: int, card: tuple[str, str], partner: str
) -> Iterator[tuple[bytes, bytes]]:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for i in range(customers):
        cid = f"{prefix}{i}"
        body: dict[str, Any] = {
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
        if i % 50 == 1:
            body.update(payment_method="master_account", partner_id=partner)
        elif i % 50 == 2:
            body.update(
                payment_method="stripe",
                origin="online_top_up",
                stripe_customer_id=card[0],
                stripe_payment_method_id=card[1],
            )
        yield cid.encode(), json.dumps(body).encode()
    yield (
        partner.encode(),
        json.dumps(
            {
                "event_id": f"b-{partner}",
                "occurred_at": at,
                "customer_id": partner,
                "currency": "USD",
                "balance": "1000000000.00",
            }
        ).encode(),
    )


def balance_messages(prefix: str, customers: int, events: int) -> Iterator[tuple[bytes, bytes]]:
    base = datetime.now(UTC) - timedelta(minutes=30)
    # Customers in a random (seeded) order, as metering emits them: not in id order, which
    # PostgreSQL would serve from neighbouring pages.
    order = list(range(customers))
    random.Random(20261125).shuffle(order)
    for n in range(events):
        cid = f"{prefix}{order[n % customers]}"
        crossing = n % 1000 == 7
        body = {
            "event_id": f"e-{prefix}{n}",
            "occurred_at": (base + timedelta(microseconds=n)).isoformat(),
            "customer_id": cid,
            "currency": "USD",
            "balance": "5.00" if crossing else f"{500 + n % 97}.25",
            "sequence": n // customers + 1,
        }
        yield cid.encode(), json.dumps(body).encode()


async def measure(
    args: argparse.Namespace, customers: int, events: int
) -> tuple[dict[str, Any], list[float]]:
    bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    topics = Topics()
    group = f"bench-{topics.suffix}"
    database = f"auto_topup_bench_{topics.suffix}"
    admin = await connect(_db(server, "postgres"))
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    kafka_admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await kafka_admin.start()
    copy = f"bench-copy-{topics.suffix}"
    # the passthrough's live run (its latency): a source and a copy of its own
    live, live_copy = f"bench-live-{topics.suffix}", f"bench-live-copy-{topics.suffix}"
    names = [
        topics[n]
        for n in (
            "WALLET_BALANCE_CHANGED",
            "SETTINGS_UPDATED",
            "INVOICE_REQUESTED",
            "CREDIT_ISSUED",
            "TOP_UP_FAILED",
            "AUTO_TOPUP_DEAD_LETTER",
        )
    ]
    ours = [*names, copy, live, live_copy]
    await kafka_admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in ours])
    await kafka_admin.close()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": _db(server, database),
        "STRIPE_API_KEY": "sk_test_bench_fake",
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE", ""),
        "AUTO_TOPUP_CONSUMER_GROUP": group,
        "AUTO_TOPUP_TOPIC_PARTITIONS": str(PARTITIONS),
        "AUTO_TOPUP_LOG_LEVEL": "INFO",
        **topics.env(),
    }
    prefix = f"b{topics.suffix}-"
    card = await asyncio.to_thread(saved_card, env["STRIPE_API_BASE"], GOOD)
    print(f"  filling {customers:,} settings and {events:,} balance events ...", flush=True)
    await fill(
        bootstrap,
        topics["SETTINGS_UPDATED"],
        settings_messages(prefix, customers, card, f"{prefix}partner"),
    )
    service = ServiceProcess(env, "bench")
    service.start()
    await wait_drained(bootstrap, group, topics["SETTINGS_UPDATED"])
    service.stop()
    await fill(
        bootstrap, topics["WALLET_BALANCE_CHANGED"], balance_messages(prefix, customers, events)
    )
    # Baseline P on the same backlog (same partitions, same messages).
    baseline = await passthrough(
        bootstrap, topics["WALLET_BALANCE_CHANGED"], copy, f"{group}-p", events
    )
    service = ServiceProcess(env, "bench")
    started = time.monotonic()
    service.start()
    finished = await wait_drained(bootstrap, group, topics["WALLET_BALANCE_CHANGED"])
    rate = events / (finished - started)
    latencies: list[float] = []
    # the same generator for the service and the passthrough: same events, same rate, same
    # seconds, the same crossing 1% tracked
    generator: dict[str, Any] = {
        "partitions": PARTITIONS,
        "prefix": prefix,
        "customers": customers,
        "rate": rate / 2,
        "seconds": args.latency_seconds,
        "track": "crossing",
    }
    if args.latency_seconds:
        print(
            f"  latency at {rate / 2:,.0f} events/s for {args.latency_seconds:.0f} s ...",
            flush=True,
        )
        latencies = await open_loop(
            bootstrap,
            topics["WALLET_BALANCE_CHANGED"],
            topics["INVOICE_REQUESTED"],
            names_input=trigger_of,
            **generator,
        )
    service.stop()
    stats = next(e["runtime"] for e in service.logs() if "runtime" in e)
    passthrough_latencies: list[float] = []
    if args.latency_seconds:
        print(f"  the passthrough's latency at {rate / 2:,.0f} events/s ...", flush=True)
        passthrough_latencies = await passthrough_latency(
            bootstrap, live, live_copy, f"{group}-live", generator
        )
    await drop(bootstrap, server, database, ours)
    grown_kb = stats["max_rss_kb"] - stats["rss_kb_at_start"]
    result: dict[str, Any] = {
        "customers": customers,
        "events": events,
        "baseline_events_per_s": baseline,
        "service_events_per_s": rate,
        "ratio": rate / baseline,
        "bytes_per_customer": grown_kb * 1024 / customers,
        "max_rss_mb": stats["max_rss_kb"] / 1024,
        "gc_pause_ms": stats["longest_gc_pause_ms"],
        "gc_pause_ms_by_generation": stats["longest_gc_pause_ms_by_generation"],
        "median_batch_apply_ms": stats.get("median_batch_apply_ms"),
        "batches_applied": stats.get("batches_applied"),
        "latency_rate": rate / 2,
        # contract v2's wait for the other input topic (the service's setting, as it runs here)
        "align_ms": int(
            os.environ.get(
                "AUTO_TOPUP_INPUT_ALIGN_MS", Settings.model_fields["input_align_ms"].default
            )
        ),
        **_latency("", latencies),
        **_latency("passthrough_", passthrough_latencies),
    }
    return result, latencies


def _write(summary: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench.json").write_text(summary)


def _na(value: float | None, spec: str, unit: str = "") -> str:
    return "NA" if value is None else f"{format(value, spec)}{unit}"


def _rows(
    args: argparse.Namespace,
    big: dict[str, Any],
    small: dict[str, Any],
    line: dict[str, float | None],
) -> list[tuple[str, str]]:
    def lat(key: str) -> str:
        ms = (big.get(f"{key}p50_ms"), big.get(f"{key}p99_ms"), big.get(f"{key}p999_ms"))
        return " / ".join(_na(v, ",.1f", " ms") for v in ms)

    rate = f"{big['latency_rate']:,.0f} events/s"
    return [
        ("baseline P (aiokafka passthrough)", f"{big['baseline_events_per_s']:,.0f} events/s"),
        (f"service, {args.customers:,} customers", f"{big['service_events_per_s']:,.0f} events/s"),
        ("ratio service / P", f"{big['ratio']:.2f}"),
        ("service, 10,000 customers", f"{small['service_events_per_s']:,.0f} events/s"),
        ("throughput ratio, many / 10k customers", _na(line["card_ratio"], ".2f")),
        (
            f"service latency p50 / p99 / p99.9 at {rate} ({int(big['latency_samples'])} samples)",
            lat(""),
        ),
        (
            f"passthrough latency p50 / p99 / p99.9 at {rate} "
            f"({int(big['passthrough_latency_samples'])} samples)",
            lat("passthrough_"),
        ),
        ("latency ratio, service p99 / passthrough p99", _na(line["latency_ratio"], ".2f")),
        (
            f"the least it can be: alignment bound {big['align_ms']:,} ms / passthrough p99",
            _na(align_floor(big["align_ms"], big.get("passthrough_p99_ms")), ".2f"),
        ),
        ("service memory growth per customer", f"{big['bytes_per_customer']:.1f} bytes"),
        ("peak resident memory", f"{big['max_rss_mb']:.0f} MB"),
        (
            "longest GC pause (by generation 0 / 1 / 2)",
            f"{big['gc_pause_ms']:.2f} ms ("
            + " / ".join(f"{ms:.1f}" for ms in big["gc_pause_ms_by_generation"])
            + ")",
        ),
        (
            f"median time to apply a batch ({big['batches_applied'] or 0} batches)",
            _na(big["median_batch_apply_ms"], ".2f", " ms"),
        ),
        ("GC ratio, longest pause / median batch", _na(line["gc_ratio"], ".2f")),
    ]


async def main(args: argparse.Namespace) -> int:
    print(f"bench: {args.customers:,} customers", flush=True)
    big, latencies = await measure(args, args.customers, args.events)
    if latencies:
        png = await asyncio.to_thread(
            latency_png, latencies, big["latency_rate"], RESULTS / "latency.png"
        )
        print(f"  latency plot: {png}", flush=True)
    print("bench: 10,000 customers", flush=True)
    small, _ = await measure(
        argparse.Namespace(**{**vars(args), "latency_seconds": 0}), 10_000, args.small_events
    )
    line = figures(big, small)
    rows = _rows(args, big, small, line)
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    # the last line's figures under "line", by the same names
    summary = json.dumps(
        {"big": big, "small": small, "card_ratio": line["card_ratio"], "line": line}, indent=2
    )
    await asyncio.to_thread(_write, summary)
    print(bench_line(line))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small-events", type=int, default=300_000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
