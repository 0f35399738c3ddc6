"""The FastStream subscriber: consumed records in, offsets committed after they are applied."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber as KafkaSubscriber
from faststream.message import StreamMessage

from service.config import Settings
from service.service_layer.handlers import BatchReport
from service.service_layer.ports import InputRecord
from service.service_layer.processor import BatchProcessor, Stopped

log = logging.getLogger(__name__)
decisions = logging.getLogger("auto_topup.decisions")
batches = logging.getLogger("auto_topup.batches")

Parser = Callable[[tuple[ConsumerRecord, ...]], Awaitable[StreamMessage[Any]]]


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def tolerant_parser(
    batch: tuple[ConsumerRecord, ...], original: Parser
) -> StreamMessage[Any]:
    """FastStream's parser decodes every header as UTF-8; a bad header must not sink a batch.

    It parses copies with readable headers and keeps the untouched records as raw_message, so
    that a dead letter carries the original bytes.
    """
    readable = tuple(
        record
        if all(_utf8(v) for _, v in record.headers)
        else replace(
            record, headers=[(k, v.decode("utf-8", "replace").encode()) for k, v in record.headers]
        )
        for record in batch
    )
    message = await original(readable)
    message.raw_message = batch
    return message


async def no_decoder(message: StreamMessage[Any], original: Any) -> None:
    """The handler reads raw records; the codec does the decoding (exact decimals)."""
    return None


class DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions go to another member, the batch in flight is applied and committed."""

    def __init__(self, in_flight: asyncio.Lock) -> None:
        self._in_flight = in_flight

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._in_flight:
            log.info("partitions revoked: %s", _names(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _names(assigned))


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(sorted(f"{p.topic}[{p.partition}]" for p in partitions)) or "none"


def _log_report(report: BatchReport) -> None:
    for entry in report.log:
        level = logging.DEBUG if entry.outcome in ("applied", "stale") else logging.INFO
        if decisions.isEnabledFor(level):
            decisions.log(
                level,
                "decision",
                extra={
                    "decision": {
                        "topic": entry.topic,
                        "partition": entry.partition,
                        "offset": entry.offset,
                        "customer_id": entry.customer_id,
                        "event_id": entry.event_id,
                        "outcome": entry.outcome,
                        "reason": entry.reason,
                        "detail": entry.detail,
                        "method": entry.method,
                        "business_date": entry.business_date.isoformat()
                        if entry.business_date
                        else None,
                    }
                },
            )


class Halted(Exception):
    """An earlier batch failed in a way that was not handled: no offset may be committed."""


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    processor: BatchProcessor,
    on_committed: Callable[[BatchReport, float, float | None], None],
    on_fatal: Callable[[BaseException], None],
) -> KafkaSubscriber:
    """Subscribes the batch handler; on_committed(report, seconds, oldest record's age)."""
    in_flight = asyncio.Lock()
    halted = asyncio.Event()

    subscriber = broker.subscriber(
        *settings.topics.inputs,
        batch=True,
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(settings.session_timeout_ms // 3, 500),
        listener=DrainOnRevoke(in_flight),
        parser=tolerant_parser,
        decoder=no_decoder,
        title="auto-topup-inputs",
        include_in_schema=False,
    )

    async def consume(msg: KafkaMessage) -> None:
        records = [
            InputRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
            for r in msg.raw_message
        ]
        started = time.perf_counter()
        async with in_flight:
            if halted.is_set():
                raise Halted("consumer halted; waiting for shutdown")
            try:
                report = await processor.process(records)
            except Stopped:
                log.info(
                    "shutting down: %d records of this batch are left for redelivery", len(records)
                )
                raise
            except BaseException as exc:
                # Never commit past records that were not applied: stop consuming, exit, and
                # let the next start redeliver them.
                halted.set()
                on_fatal(exc)
                raise
            applied = time.perf_counter()
            try:
                await msg.ack()  # commits the positions after this batch
            except (CommitFailedError, IllegalStateError, KafkaError) as exc:
                # Applied but not committed: whoever owns the partitions now gets these records
                # again, and applying them again changes nothing.
                log.warning(
                    "offset commit failed after a rebalance (%s); records will be "
                    "redelivered and de-duplicated",
                    exc,
                )
        done = time.perf_counter()
        if batches.isEnabledFor(logging.DEBUG):
            batches.debug(
                "batch of %d: applied in %.1f ms, committed in %.1f ms",
                len(records),
                (applied - started) * 1000,
                (done - applied) * 1000,
            )
        _log_report(report)
        stamps = [r.timestamp for r in msg.raw_message if r.timestamp is not None]
        oldest = time.time() - min(stamps) / 1000 if stamps else None
        on_committed(report, done - started, oldest)

    subscriber(consume)
    return subscriber
