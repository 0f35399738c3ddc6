"""A run's backlog (the bench's and the replay-memory run's): filled as fast as the local broker
takes it, in a busy producer's batches, and dropped with the run's database afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS
from tests.pg_tools import connect


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


async def drop(bootstrap: str, server: str, database: str, topics: list[str]) -> None:
    """The backlog is hundreds of megabytes: drop it with the run's database (`server` is any
    DATABASE_URL of the same server)."""
    admin = await connect(urlunsplit(urlsplit(server)._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()
    kafka_admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await kafka_admin.start()
    try:
        await kafka_admin.delete_topics(topics)
    finally:
        await kafka_admin.close()
