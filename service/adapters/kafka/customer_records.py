"""One customer's records of the input topics (`auto-topup simulate`): only the partition its
key hashes to, read from its beginning to the end offset taken at start, keeping the records of
that key. Assigned partitions, no consumer group, no commits: reading changes nothing.

The partition is the one Kafka's default partitioner gives the key (murmur2 of the key bytes,
made positive, modulo the topic's partition count), as every producer of the input topics
uses: aiokafka's `DefaultPartitioner` and the Java client's `Utils.toPositive(murmur2(key))`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from service.adapters.kafka.security import KafkaAccess, KafkaRefused, check_access
from service.adapters.kafka.topics import partitions_of
from service.service_layer.ports import InputRecord

# How long to wait for Kafka to answer at start (metadata, offsets), and for a read that
# makes no progress, unless the caller says otherwise.
WAIT_SECONDS = 30.0
# One fetch waits at most this long for records (then the loop checks its progress).
FETCH_MS = 500

Wanted = tuple[str, bytes]  # (topic, key)


class RecordsError(Exception):
    """The records could not be read (Kafka unreachable, a topic missing, a read stalled): one
    line for the operator."""


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner sends `key` to."""
    positive: int = murmur2(key) & 0x7FFFFFFF
    return positive % partitions


def quiet_client_logs() -> None:
    """aiokafka logs every failed connection; the command says it once."""
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    logging.getLogger("aiokafka").propagate = False


def _describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc).strip()
    return text if text.startswith(name) else f"{name}: {text}" if text else name


async def _partition_counts(kafka: KafkaAccess, topics: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic in dict.fromkeys(topics):
        try:
            counts[topic] = len(await partitions_of(kafka, [topic]))
        except LookupError:
            raise RecordsError(f"topic {topic} does not exist") from None
    return counts


async def read_keyed(
    kafka: KafkaAccess, wanted: Iterable[Wanted], wait: float = WAIT_SECONDS
) -> dict[Wanted, list[InputRecord]]:
    """The records of each (topic, key), in their partition's order, up to the end offsets
    taken at start. RecordsError when Kafka does not answer within `wait` seconds, or a read
    makes no progress for that long."""
    wanted = list(dict.fromkeys(wanted))
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        client_id="auto-topup-simulate",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # records deleted by retention meanwhile: go on
        request_timeout_ms=int(wait * 1000),
    )
    try:
        try:
            async with asyncio.timeout(wait):
                await check_access(kafka, wait)
                await consumer.start()
                counts = await _partition_counts(kafka, (topic for topic, _ in wanted))
                keys: dict[TopicPartition, set[bytes]] = {}
                for topic, key in wanted:
                    tp = TopicPartition(topic, partition_for(key, counts[topic]))
                    keys.setdefault(tp, set()).add(key)
                begin = await consumer.beginning_offsets(list(keys))
                end = await consumer.end_offsets(list(keys))
        except TimeoutError:
            raise RecordsError(f"Kafka is unreachable (gave up after {wait:g}s)") from None
        except (KafkaError, OSError, KafkaRefused) as exc:
            raise RecordsError(f"Kafka is unreachable: {_describe(exc)}") from None
        found = await _read(consumer, keys, begin, end, wait)
    finally:
        await consumer.stop()
    return {
        (topic, key): [r for r in found if r.topic == topic and r.key == key]
        for topic, key in wanted
    }


async def _read(
    consumer: AIOKafkaConsumer,
    keys: dict[TopicPartition, set[bytes]],
    begin: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    wait: float,
) -> list[InputRecord]:
    """Every record of the partitions from `begin` to `end` (excluded) whose key is wanted."""
    consumer.assign(list(keys))
    for tp in keys:
        consumer.seek(tp, begin[tp])
    pending = {tp for tp in keys if end[tp] > begin[tp]}
    found: list[InputRecord] = []
    progress_at = time.monotonic()
    while pending:
        try:
            batch: dict[TopicPartition, list[Any]] = await consumer.getmany(
                *pending, timeout_ms=FETCH_MS
            )
        except KafkaError as exc:
            raise RecordsError(f"reading the input topics failed: {_describe(exc)}") from None
        for tp, records in batch.items():
            found += [
                InputRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
                for r in records
                if r.offset < end[tp] and r.key in keys[tp]
            ]
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
        if batch:
            progress_at = time.monotonic()
        elif time.monotonic() - progress_at > wait:
            raise RecordsError(f"reading the input topics made no progress for {wait:g}s")
    return found
