"""Latency at a fixed load: an open-loop producer (each send at its scheduled time, whatever
the service does, so no coordinated omission) and the output events it causes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def open_loop(
    bootstrap: str,
    topic: str,
    output: str,
    partitions: int,
    prefix: str,
    customers: int,
    rate: float,
    seconds: float,
) -> list[float]:
    """Sends balance events at `rate`/s for `seconds`; 1% of them cross the threshold of a
    cheque customer that had not crossed yet and cause an invoice. Returns the latencies in ms
    from each crossing event's send to its invoice's timestamp at the broker (CreateTime of
    the acknowledged output)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=20)
    await consumer.start()
    parts = [TopicPartition(output, p) for p in range(partitions)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    sent_ms: dict[str, float] = {}
    total = int(rate * seconds)
    at = datetime.now(UTC).isoformat()
    # cheque customers (index mod 50 not 1 or 2) that did not cross during the backlog
    crossing = [i for i in range(customers) if i % 1000 in (500, 503, 504, 505, 506, 507, 508)]
    # Everything is encoded before the clock starts: the generator shares the machine's two
    # cores with the service, the broker and the database, and must stay on schedule.
    messages: list[tuple[str, bytes, bytes]] = []
    for n in range(total):
        if n % 100 == 0 and n // 100 < len(crossing):
            cid, balance = f"{prefix}{crossing[n // 100]}", "5.00"
        else:
            cid, balance = f"{prefix}{(n * 7919) % customers}", "800.00"
        event_id = f"lat-{prefix}{n}"
        body = {
            "event_id": event_id,
            "occurred_at": at,
            "customer_id": cid,
            "currency": "USD",
            "balance": balance,
            "sequence": 2 + n,
        }
        messages.append(
            (event_id if balance == "5.00" else "", cid.encode(), json.dumps(body).encode())
        )
    started = time.monotonic()
    try:
        for n, (tracked, key, value) in enumerate(messages):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule of an open-loop load generator
            if tracked:
                sent_ms[tracked] = time.time() * 1000
            await producer.send(topic, value, key=key)
        await producer.flush()
        latencies: list[float] = []
        deadline = time.monotonic() + 60
        while len(latencies) < len(sent_ms) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    trigger = json.loads(r.value)["trigger_event_id"]
                    if trigger in sent_ms:
                        latencies.append(r.timestamp - sent_ms[trigger])
        return latencies
    finally:
        await producer.stop()
        await consumer.stop()
