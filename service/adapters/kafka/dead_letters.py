"""The dead-letter topic, read from its beginning to the end offsets taken at start (assigned
partitions, no consumer group: reading commits nothing), and records published back to their
original topics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.adapters.kafka.security import KafkaAccess, check_access
from service.adapters.kafka.topics import partitions_of
from service.service_layer.dead_letters import DeadLetter, DlqError

# What a failure to reach Kafka raises (the commands tell it in one line).
KAFKA_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError)


def quiet_client_logs() -> None:
    """aiokafka logs every failed connection; the command says it once."""
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    logging.getLogger("aiokafka").propagate = False


def describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc).strip()
    return text if text.startswith(name) else f"{name}: {text}" if text else name


async def _partitions(kafka: KafkaAccess, topic: str) -> list[Any]:
    try:
        return await partitions_of(kafka, [topic])
    except LookupError:
        raise DlqError(f"topic {topic} does not exist") from None


async def read_dead_letters(kafka: KafkaAccess, topic: str, timeout: float) -> list[DeadLetter]:
    """Every record of the topic up to the end offsets taken now, oldest first.

    Assigned partitions, no consumer group, no commits: reading changes nothing. Gives up
    (DlqError) when Kafka does not answer, or reading stalls, for `timeout` seconds.
    """
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        client_id="auto-topup-dlq",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # records deleted by retention meanwhile: go on
    )
    found: list[DeadLetter] = []
    try:
        async with asyncio.timeout(timeout):
            await check_access(kafka, timeout)
            await consumer.start()
            partitions = await _partitions(kafka, topic)
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, begin[tp])
        pending = {tp for tp in partitions if end[tp] > begin[tp]}
        progress_at = time.monotonic()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                found += [
                    DeadLetter(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        timestamp_ms=r.timestamp,
                        key=r.key,
                        value=r.value,
                        headers=tuple(r.headers),
                    )
                    for r in records
                    if r.offset < end[tp]
                ]
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if batch:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at > timeout:
                raise DlqError(f"reading {topic} made no progress for {timeout:g}s")
    finally:
        await consumer.stop()
    found.sort(key=lambda d: (d.timestamp_ms, d.partition, d.offset))
    return found


async def _missing_topics(kafka: KafkaAccess, topics: Iterable[str]) -> set[str]:
    missing = set()
    for topic in set(topics):
        try:
            await partitions_of(kafka, [topic])
        except LookupError:
            missing.add(topic)
    return missing


async def publish(
    kafka: KafkaAccess, records: Sequence[DeadLetter], timeout: float
) -> list[tuple[DeadLetter, str]]:
    """Publishes each record's key, value and original headers to its original topic, with an
    idempotent producer (acks=all), and waits for every acknowledgement. Returns the failures."""
    failed: list[tuple[DeadLetter, str]] = []
    if not records:
        return failed
    async with asyncio.timeout(timeout):
        await check_access(kafka, timeout)
        missing = await _missing_topics(kafka, (r.original_topic or "" for r in records))
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(),
        client_id="auto-topup-dlq",
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        async with asyncio.timeout(timeout):
            await producer.start()
        sent: list[tuple[DeadLetter, asyncio.Future[Any]]] = []
        for dead in records:
            if dead.original_topic in missing:
                failed.append((dead, f"topic {dead.original_topic} does not exist"))
                continue
            try:
                future = await producer.send(
                    dead.original_topic,
                    value=dead.value,
                    key=dead.key,
                    headers=list(dead.redrive_headers),
                )
            except KafkaError as exc:
                failed.append((dead, describe(exc)))
                continue
            sent.append((dead, future))
        outcomes = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        for (dead, _), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed.append((dead, describe(outcome)))
    finally:
        await producer.stop()
    return failed
