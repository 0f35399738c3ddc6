"""Filling a topic with a backlog as fast as the local broker takes it (the bench's and the
replay-memory run's), in a busy producer's batches."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiokafka import AIOKafkaProducer

from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS


async def fill(bootstrap: str, topic: str, messages: Iterator[tuple[bytes, bytes]]) -> int:
    """Sends every (key, value); returns how many, once the broker has acknowledged them all."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=50,
        max_batch_size=64 * 1024,  # a busy producer's batches (aiokafka: 16 KB by default)
        compression_type=None,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    await producer.start()
    sent = 0
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent
