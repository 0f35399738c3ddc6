"""The producer the relay publishes with, and the configs of the topics it publishes to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Final

from aiokafka import AIOKafkaProducer

from service.adapters.kafka.security import KafkaAccess, kafka_access
from service.adapters.kafka.topics import restore_topics
from service.config import Settings

# The largest record the service makes is a dead letter: at most 64 KiB each of the original
# value, key and headers (service/service_layer/outbox.py) and a few KiB of dlq_* headers, under
# 200 KiB in all; output events are a few hundred bytes. The producer's request limit leaves
# five times that (aiokafka checks it on the uncompressed record).
MAX_RECORD_BYTES: Final = 200 * 1024
MAX_REQUEST_BYTES: Final = 1024 * 1024
# gzip: in the standard library (lz4 / zstd / snappy need another package), and dead letters
# (JSON) shrink several times. The broker checks max.message.bytes on the compressed batch.
COMPRESSION: Final = "gzip"
# max.message.bytes of the topics the service creates for what the relay publishes: Kafka's own
# default (1 MiB and a batch's 12 bytes of log overhead), stated so that a broker configured
# lower does not refuse a dead letter the producer accepts. Output topics made by someone else
# need at least 256 KiB (the default 1 MiB is plenty).
TOPIC_MAX_MESSAGE_BYTES: Final = MAX_REQUEST_BYTES + 12
REQUEST_TIMEOUT_MS: Final = 15_000

# Given topics whose sends failed as if they were gone: re-creates those that are missing (when
# allowed) and returns those that are missing and cannot be created.
TopicRestorer = Callable[[Collection[str]], Awaitable[Collection[str]]]


def make_producer(kafka: KafkaAccess) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **kafka.client_kwargs(),
        client_id="auto-topup-relay",
        acks="all",
        enable_idempotence=False,  # why: the docstring of relay.py
        compression_type=COMPRESSION,
        max_request_size=MAX_REQUEST_BYTES,
        linger_ms=2,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The configs of the topics the service creates: each takes the replicas that must have a
    record before the relay's send (acks=all) succeeds (AUTO_TOPUP_TOPIC_MIN_INSYNC_REPLICAS);
    the dead-letter topic also takes the largest record the relay may send, whatever the
    broker's default (README: Dead letters)."""
    insync = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    configs = {name: dict(insync) for name in settings.topics.all}
    configs[settings.topics.dead_letter]["max.message.bytes"] = str(TOPIC_MAX_MESSAGE_BYTES)
    return configs


def topic_restorer(settings: Settings) -> TopicRestorer:
    """Output topics deleted while the service runs are created again, as at start; with
    AUTO_TOPUP_CREATE_TOPICS=false, none is: the relay sets their records aside."""

    async def restore(names: Collection[str]) -> list[str]:
        return await restore_topics(
            kafka_access(settings),
            names,
            settings.topic_partitions,
            settings.topic_replication_factor,
            create=settings.create_topics,
            topic_configs=topic_configs(settings),
        )

    return restore
