"""The FastStream subscriber: consumed records in, offsets committed after they are applied."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber as KafkaSubscriber
from faststream.message import StreamMessage

from service.config import Settings
from service.entrypoints.held_records import Pending
from service.entrypoints.runtime_stats import ApplyTimes
from service.service_layer import lanes
from service.service_layer.alignment import Alignment
from service.service_layer.handlers import BatchReport
from service.service_layer.ports import InputRecord
from service.service_layer.processor import BatchProcessor, Stopped

log = logging.getLogger(__name__)
decisions = logging.getLogger("auto_topup.decisions")
batches = logging.getLogger("auto_topup.batches")

Parser = Callable[[tuple[ConsumerRecord, ...]], Awaitable[StreamMessage[Any]]]

# Co-partitioned assignment: with both input topics at the same partition count and every
# member subscribed to both, the range assignor gives each member the same partition numbers of
# both (it lays out each topic's partitions in order over the members sorted by id). Range
# alone: listing round-robin second (for rolling upgrades) made aiokafka 0.14's group join
# rebalance endlessly when two instances start together ("Updating metadata for member ...
# during CompletingRebalance" hundreds of times; no instance ever consumed). An upgrade from a
# version with round-robin stops the old instances first (see the README).
ASSIGNORS = (RangePartitionAssignor,)


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

    def __init__(
        self,
        in_flight: asyncio.Lock,
        on_change: Callable[[set[TopicPartition]], None] | None = None,
    ) -> None:
        self._in_flight = in_flight
        self._on_change = on_change

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._in_flight:
            log.info("partitions revoked: %s", _names(revoked))
            if self._on_change is not None:
                self._on_change(set())

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _names(assigned))
        if self._on_change is not None:
            self._on_change(assigned)


def not_co_partitioned(assigned: set[TopicPartition], inputs: Sequence[str]) -> str | None:
    """Why this member's assignment does not hold the same partition numbers of every input
    topic (None when it does)."""
    numbers = {t: sorted(p.partition for p in assigned if p.topic == t) for t in inputs}
    if len({tuple(n) for n in numbers.values()}) <= 1:
        return None
    return "; ".join(f"{t}: {n}" for t, n in numbers.items())


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(sorted(f"{p.topic}[{p.partition}]" for p in partitions)) or "none"


def _log_report(report: BatchReport) -> None:
    for entry in report.log:
        level = (
            logging.DEBUG
            if entry.outcome in ("applied", "stale", "settings_applied")
            else logging.INFO
        )
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


class _InputConsumer:
    """The subscriber's state and steps: each batch (and each retry of held records) is
    applied under `in_flight`, then committed no further than its first held record."""

    def __init__(
        self,
        settings: Settings,
        processor: BatchProcessor,
        on_committed: Callable[[BatchReport, float, float | None], None],
        on_fatal: Callable[[BaseException], None],
        alignment: Alignment | None,
        apply_times: ApplyTimes | None = None,
    ) -> None:
        self.in_flight = asyncio.Lock()
        self.halted = asyncio.Event()
        self.pending = Pending(
            aligned=(settings.topics.wallet_balance_changed, settings.topics.settings_updated)
        )
        self.subscriber: KafkaSubscriber | None = None
        self._inputs = settings.topics.inputs
        self._processor = processor
        self._on_committed = on_committed
        self._on_fatal = on_fatal
        self._alignment = alignment
        self._apply_times = apply_times
        self._lanes = settings.batch_lanes
        self._timers: list[asyncio.TimerHandle] = []
        self._retries: set[asyncio.Task[None]] = set()
        self._context = contextvars.copy_context()  # without FastStream's message (consume)

    def assignment_changed(self, assigned: set[TopicPartition]) -> None:
        # The uncommitted records, held ones first, come again to whoever owns them now.
        self.pending.reset()
        self.schedule_retry()
        if self._alignment is not None:
            self._alignment.assign((tp.topic, tp.partition) for tp in assigned)
        why = not_co_partitioned(assigned, self._inputs)
        if why is not None:
            log.warning(
                "this instance does not hold the same partitions of both input topics (%s): "
                "settings and balances are applied as they come, without waiting for each "
                "other. Expected only while a rolling upgrade from the round-robin assignor "
                "runs (instances of both versions in the group).",
                why,
            )

    async def apply(
        self, records: list[InputRecord]
    ) -> tuple[BatchReport, dict[TopicPartition, int] | None]:
        """Applies records (under in_flight); what the handler held stays pending."""
        started = time.perf_counter()
        try:
            report = await lanes.applied(self._processor.process, records, self._lanes)
            if self._apply_times is not None:
                self._apply_times.add(time.perf_counter() - started)
            offsets = self.pending.settle(records, report.held)
        except Stopped:
            log.info("shutting down: %d records are left for redelivery", len(records))
            raise
        except BaseException as exc:
            # Never commit past records that were not applied: stop consuming, exit, and
            # let the next start redeliver them.
            self.halted.set()
            self._on_fatal(exc)
            raise
        if report.held and batches.isEnabledFor(logging.DEBUG):
            batches.debug(
                "%d records held: %s",
                len(report.held),
                ", ".join(f"{h.topic}[{h.partition}]@{h.offset}" for h in report.held),
            )
        return report, offsets

    async def commit(
        self, msg: KafkaMessage | None, offsets: dict[TopicPartition, int] | None
    ) -> None:
        consumer = self.subscriber.consumer if self.subscriber is not None else None
        try:
            if offsets is None:  # nothing held: the positions after the batch
                assert msg is not None
                await msg.ack()
            elif offsets and consumer is not None:  # no further than a held record
                await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Applied but not committed: whoever owns the partitions now gets these records
            # again, and applying them again changes nothing.
            log.warning(
                "offset commit failed after a rebalance (%s); records will be "
                "redelivered and de-duplicated",
                exc,
            )

    def schedule_retry(self) -> None:
        """Held records are decided again when a bound runs out (see Pending.due)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self.pending.retry_in is not None:
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(self.pending.retry_in, self._start_retry))

    def _start_retry(self) -> None:
        self._timers.clear()
        task = asyncio.get_running_loop().create_task(self.retry(), name="held-records")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def retry(self) -> None:
        started = time.perf_counter()
        async with self.in_flight:
            if self.halted.is_set() or not self.pending:
                return
            due = self.pending.due()
            if not due:  # nothing may be decided differently yet
                self.pending.recount()
                self.schedule_retry()
                return
            try:
                report, offsets = await self.apply(due)
            except BaseException:  # reported by apply (a shutdown, or fatal)
                return
            await self.commit(None, offsets)
            self.schedule_retry()
        _log_report(report)
        self._on_committed(report, time.perf_counter() - started, None)

    async def consume(self, msg: KafkaMessage) -> None:
        """Applies a batch in a context without FastStream's message: a timer made meanwhile
        (asyncpg's, cancelled, kept in the loop's heap until due) copied it, and so kept the
        batch's records alive for full collections to walk (ADR 0005)."""
        records = [
            InputRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
            for r in msg.raw_message
        ]
        stamps = [r.timestamp / 1000 for r in msg.raw_message if r.timestamp is not None]
        applying = self._consume(msg, records, min(stamps, default=None))
        await asyncio.get_running_loop().create_task(applying, context=self._context.copy())

    async def _consume(
        self, msg: KafkaMessage, records: list[InputRecord], oldest: float | None
    ) -> None:
        started = time.perf_counter()
        async with self.in_flight:
            if self.halted.is_set():
                raise Halted("consumer halted; waiting for shutdown")
            # held records ahead: a partition's order is kept
            due = self.pending.due(records) if self.pending else []
            self.pending.fetched(records)
            report, offsets = await self.apply(due + records)
            applied = time.perf_counter()
            await self.commit(msg, offsets)
            if offsets is not None:
                self.schedule_retry()
        done = time.perf_counter()
        if batches.isEnabledFor(logging.DEBUG):
            batches.debug(
                "batch of %d: applied in %.1f ms, committed in %.1f ms",
                len(due) + len(records),
                (applied - started) * 1000,
                (done - applied) * 1000,
            )
        _log_report(report)
        self._on_committed(report, done - started, None if oldest is None else time.time() - oldest)


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    processor: BatchProcessor,
    on_committed: Callable[[BatchReport, float, float | None], None],
    on_fatal: Callable[[BaseException], None],
    alignment: Alignment | None = None,
    *,
    apply_times: ApplyTimes | None = None,
) -> KafkaSubscriber:
    """Subscribes the batch handler; on_committed(report, seconds, oldest record's age).

    `alignment` is the one the handler holds records with (None: nothing is ever held);
    `apply_times` gets how long each batch took to apply (BatchProcessor.process)."""
    consumer = _InputConsumer(settings, processor, on_committed, on_fatal, alignment, apply_times)
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
        partition_assignment_strategy=ASSIGNORS,
        listener=DrainOnRevoke(consumer.in_flight, consumer.assignment_changed),
        parser=tolerant_parser,
        decoder=no_decoder,
        title="auto-topup-inputs",
        include_in_schema=False,
    )
    consumer.subscriber = subscriber
    subscriber(consumer.consume)
    return subscriber
