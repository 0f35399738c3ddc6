"""The FastStream subscriber: consumed records in, offsets committed after they are applied."""

from __future__ import annotations

import asyncio
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
from service.service_layer.alignment import Alignment, Held
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


class Pending:
    """Records that the handler did not apply (see alignment.py), kept until it does.

    They are handed in again with every batch, ahead of the new records (a partition's order is
    kept), and once more when the bound of a waiting one runs out. Nothing is fetched again and
    no partition stops: the records after a held one are applied as they come (those of its
    customer are held too). A partition is committed only up to its first held record, so a
    restart or a rebalance redelivers it and what follows (applied again, that changes
    nothing). Everything is forgotten on an assignment change.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], list[InputRecord]] = {}
        # (topic, partition) -> the offset after the last record fetched from it
        self._next: dict[tuple[str, int], int] = {}
        self.retry_in: float | None = None  # when a waiting record's bound runs out

    def __bool__(self) -> bool:
        return bool(self._held)

    def reset(self) -> None:
        self._held.clear()
        self._next.clear()
        self.retry_in = None

    def records(self) -> list[InputRecord]:
        return [r for records in self._held.values() for r in records]

    def fetched(self, batch: Sequence[ConsumerRecord]) -> None:
        """Notes how far each partition was fetched (a batch comes partition by partition)."""
        last: ConsumerRecord | None = None
        for r in batch:
            if last is not None and (r.partition != last.partition or r.topic != last.topic):
                self._next[(last.topic, last.partition)] = last.offset + 1
            last = r
        if last is not None:
            self._next[(last.topic, last.partition)] = last.offset + 1

    def settle(
        self, given: Sequence[InputRecord], held: Sequence[Held]
    ) -> dict[TopicPartition, int] | None:
        """Keeps what the handler held of `given`. Returns the offsets to commit: each
        partition's first held record, or how far it was fetched; None when nothing is held
        (then the consumer's positions are right)."""
        if not held and not self._held:
            return None
        wanted = {(h.topic, h.partition, h.offset) for h in held}
        keys = {(h.topic, h.partition) for h in held}
        kept: dict[tuple[str, int], list[InputRecord]] = {}
        for r in given:
            if (r.topic, r.partition) in keys and (r.topic, r.partition, r.offset) in wanted:
                kept.setdefault((r.topic, r.partition), []).append(r)
        self._held = kept
        # Records held only behind another (no bound of their own) whose customer no longer
        # waits are decided again at once, not at the next fetch.
        self.retry_in = min(
            (h.retry_in for h in held if h.retry_in > 0), default=0.0 if held else None
        )
        return {
            TopicPartition(topic, partition): kept[(topic, partition)][0].offset
            if (topic, partition) in kept
            else offset
            for (topic, partition), offset in self._next.items()
        }


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
    alignment: Alignment | None = None,
) -> KafkaSubscriber:
    """Subscribes the batch handler; on_committed(report, seconds, oldest record's age).

    `alignment` is the one the handler holds records with (None: nothing is ever held)."""
    in_flight = asyncio.Lock()
    halted = asyncio.Event()
    pending = Pending()
    timers: list[asyncio.TimerHandle] = []
    retries: set[asyncio.Task[None]] = set()
    inputs = settings.topics.inputs

    def assignment_changed(assigned: set[TopicPartition]) -> None:
        # The uncommitted records, held ones first, come again to whoever owns them now.
        pending.reset()
        schedule_retry()
        if alignment is not None:
            alignment.assign((tp.topic, tp.partition) for tp in assigned)
        why = not_co_partitioned(assigned, inputs)
        if why is not None:
            log.warning(
                "this instance does not hold the same partitions of both input topics (%s): "
                "settings and balances are applied as they come, without waiting for each "
                "other. Expected only while a rolling upgrade from the round-robin assignor "
                "runs (instances of both versions in the group).",
                why,
            )

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
        listener=DrainOnRevoke(in_flight, assignment_changed),
        parser=tolerant_parser,
        decoder=no_decoder,
        title="auto-topup-inputs",
        include_in_schema=False,
    )

    async def apply(
        records: list[InputRecord],
    ) -> tuple[BatchReport, dict[TopicPartition, int] | None]:
        """Applies records (under in_flight); what the handler held stays pending."""
        try:
            report = await processor.process(records)
            offsets = pending.settle(records, report.held)
        except Stopped:
            log.info("shutting down: %d records are left for redelivery", len(records))
            raise
        except BaseException as exc:
            # Never commit past records that were not applied: stop consuming, exit, and
            # let the next start redeliver them.
            halted.set()
            on_fatal(exc)
            raise
        if report.held and batches.isEnabledFor(logging.DEBUG):
            batches.debug(
                "%d records held: %s",
                len(report.held),
                ", ".join(f"{h.topic}[{h.partition}]@{h.offset}" for h in report.held),
            )
        return report, offsets

    async def commit(msg: KafkaMessage | None, offsets: dict[TopicPartition, int] | None) -> None:
        try:
            if offsets is None:  # nothing held: the positions after the batch
                assert msg is not None
                await msg.ack()
            elif offsets and subscriber.consumer is not None:  # no further than a held record
                await subscriber.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Applied but not committed: whoever owns the partitions now gets these records
            # again, and applying them again changes nothing.
            log.warning(
                "offset commit failed after a rebalance (%s); records will be "
                "redelivered and de-duplicated",
                exc,
            )

    def schedule_retry() -> None:
        """Held records are decided again with every batch, and when a bound runs out."""
        for timer in timers:
            timer.cancel()
        timers.clear()
        if pending.retry_in is not None:
            timers.append(asyncio.get_running_loop().call_later(pending.retry_in, start_retry))

    def start_retry() -> None:
        timers.clear()
        task = asyncio.get_running_loop().create_task(retry(), name="held-records")
        retries.add(task)
        task.add_done_callback(retries.discard)

    async def retry() -> None:
        started = time.perf_counter()
        async with in_flight:
            if halted.is_set() or not pending:
                return
            try:
                report, offsets = await apply(pending.records())
            except BaseException:  # reported by apply (a shutdown, or fatal)
                return
            await commit(None, offsets)
            schedule_retry()
        _log_report(report)
        on_committed(report, time.perf_counter() - started, None)

    async def consume(msg: KafkaMessage) -> None:
        records = [
            InputRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
            for r in msg.raw_message
        ]
        started = time.perf_counter()
        async with in_flight:
            if halted.is_set():
                raise Halted("consumer halted; waiting for shutdown")
            if pending:
                records = pending.records() + records  # ahead: a partition's order is kept
            pending.fetched(msg.raw_message)
            report, offsets = await apply(records)
            applied = time.perf_counter()
            await commit(msg, offsets)
            if offsets is not None:
                schedule_retry()
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
