"""Latency at a fixed load: an open-loop producer (each send at its scheduled time, whatever
the service does, so no coordinated omission) and the output events it causes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS, POLL_MS, STALL_SECONDS

Track = Literal["crossing", "all"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def events_in(rate: float, seconds: float) -> int:
    """How many events open_loop sends at `rate`/s for `seconds`."""
    return int(rate * seconds)


def trigger_of(value: bytes) -> str:
    """The input an invoice names: the balance event that caused it."""
    return str(json.loads(value)["trigger_event_id"])


def event_id_of(value: bytes) -> str:
    """The input a passthrough's copy names: the copy has the input's body."""
    return str(json.loads(value)["event_id"])


def _messages(
    prefix: str, customers: int, partitions: int, total: int, track: Track
) -> list[tuple[str, int, bytes, bytes]]:
    """(tracked event id or "", partition, key, value) for every event, encoded ahead."""
    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))
    at = datetime.now(UTC).isoformat()
    # cheque customers (index mod 50 not 1 or 2) that did not cross during the backlog
    crossing = [i for i in range(customers) if i % 1000 in (500, 503, 504, 505, 506, 507, 508)]
    messages: list[tuple[str, int, bytes, bytes]] = []
    for n in range(total):
        crosses = n % 100 == 0 and n // 100 < len(crossing)
        if crosses:
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
        key = cid.encode()
        messages.append(
            (
                event_id if crosses or track == "all" else "",
                partitioner(key, all_partitions, all_partitions),
                key,
                json.dumps(body).encode(),
            )
        )
    return messages


async def open_loop(
    bootstrap: str,
    topic: str,
    output: str,
    partitions: int,
    prefix: str,
    customers: int,
    rate: float,
    seconds: float,
    *,
    names_input: Callable[[bytes], str],
    track: Track = "crossing",
) -> list[float]:
    """Sends balance events at `rate`/s for `seconds`; 1% of them cross the threshold of a
    cheque customer that had not crossed yet (and cause an invoice, if a service reads them).
    Returns the latencies in ms from each tracked event's scheduled send time to the broker
    timestamp (CreateTime of the acknowledged record) of the `output` record that names it:
    `names_input(value)` is the event_id an output record names (trigger_of for invoices,
    event_id_of for a passthrough's copies). `track` is "crossing" (the crossing 1%) or
    "all" (every event).

    The generator shares the machine's two cores with the service, the broker and the
    database, so it must cost little: everything is encoded before the clock starts, and every
    millisecond it sends what is due by then as one record batch per partition. Latency counts
    from the *scheduled* time, so a late generator adds to it rather than hiding it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        fetch_max_wait_ms=20,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    await consumer.start()
    parts = [TopicPartition(output, p) for p in range(partitions)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=0,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    await producer.start()
    messages = _messages(prefix, customers, partitions, events_in(rate, seconds), track)
    try:
        scheduled_ms = await _send(producer, topic, messages, rate)
        return await _collect(consumer, scheduled_ms, names_input)
    finally:
        await producer.stop()
        await consumer.stop()


async def _send(
    producer: AIOKafkaProducer,
    topic: str,
    messages: list[tuple[str, int, bytes, bytes]],
    rate: float,
) -> dict[str, float]:
    """Sends `messages` on the open-loop schedule; returns each tracked one's scheduled send
    time (wall clock, ms)."""
    total = len(messages)
    scheduled_ms: dict[str, float] = {}
    started = time.monotonic()
    wall_offset = time.time() - started  # monotonic schedule -> wall clock (broker timestamps)
    pending = []
    n = 0
    while n < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        batches: dict[int, Any] = {}
        for tracked, partition, key, value in messages[n:due]:
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            batch.append(timestamp=None, key=key, value=value)
            if tracked:
                scheduled_ms[tracked] = (started + n / rate + wall_offset) * 1000
            n += 1
        for partition, batch in batches.items():
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        next_at = started + n / rate
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(max(delay, 0.001))  # the open-loop schedule
    await asyncio.gather(*pending)
    return scheduled_ms


async def _collect(
    consumer: AIOKafkaConsumer,
    scheduled_ms: dict[str, float],
    names_input: Callable[[bytes], str],
) -> list[float]:
    """The outputs, for as long as they come: the reader may still be working through what
    was sent. Some never come (a customer that crossed during the backlog has had its top-up
    today): the samples are what came before STALL_SECONDS without one (each input once)."""
    latencies: list[float] = []
    progress_at = time.monotonic()
    while scheduled_ms and time.monotonic() - progress_at < STALL_SECONDS:
        for records in (await consumer.getmany(timeout_ms=POLL_MS)).values():
            for r in records:
                sent_ms = scheduled_ms.pop(names_input(r.value), None)
                if sent_ms is not None:
                    latencies.append(r.timestamp - sent_ms)
                    progress_at = time.monotonic()
    return latencies
