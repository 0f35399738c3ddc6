"""A fetched batch is applied in a context without FastStream's message, so that nothing made
while applying it (a database timeout's timer, say) keeps the whole batch alive after it: a
full collection walked about ten batches' records before (`make bench`, gc_pause_ms)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from typing import cast

from aiokafka import ConsumerRecord
from faststream.kafka.annotations import KafkaMessage

from service.config import Settings
from service.entrypoints.consumer import _InputConsumer
from service.service_layer.handlers import BatchReport
from service.service_layer.ports import InputRecord
from service.service_layer.processor import BatchProcessor

# FastStream keeps the message it is handling in a context variable, as this test does.
MESSAGE: contextvars.ContextVar[object] = contextvars.ContextVar("message")


class _Message:
    """What FastStream hands in: the batch's records, and ack() to commit their positions."""

    def __init__(self, raw: tuple[ConsumerRecord[bytes, bytes], ...]) -> None:
        self.raw_message = raw
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


class _Sees:
    """Applies a batch and notes which message the context it runs in carries: every timer or
    task made while applying it (asyncpg's timeout of a query, cancelled when the query returns
    but kept in the event loop's heap until it would have fired) copies that context."""

    def __init__(self) -> None:
        self.seen: list[object] = []
        self.applied: list[InputRecord] = []

    async def process(self, records: Sequence[InputRecord]) -> BatchReport:
        self.seen.append(MESSAGE.get(None))
        self.applied += records
        return BatchReport()


async def test_a_batch_is_applied_in_a_context_without_faststream_message() -> None:
    processor = _Sees()
    consumer = _InputConsumer(
        Settings(),
        cast(BatchProcessor, processor),
        lambda *_: None,
        lambda exc: None,
        alignment=None,
    )
    raw = tuple(
        ConsumerRecord("balances", 0, offset, 0, 0, b"k", b"{}", None, 1, 2, [])
        for offset in range(3)
    )
    message = _Message(raw)

    async def faststream() -> None:
        MESSAGE.set(message)
        await consumer.consume(cast(KafkaMessage, message))

    await asyncio.get_running_loop().create_task(faststream())  # a context of its own
    assert message.acked
    assert [r.offset for r in processor.applied] == [0, 1, 2]
    assert processor.seen == [None]
