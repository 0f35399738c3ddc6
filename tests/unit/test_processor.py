"""Retries of what is transient, isolation of what is poison, and shutdown, with a fake handler."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from service.contract.codec import Invalid
from service.service_layer.handlers import BatchHandler, BatchReport
from service.service_layer.ports import InputRecord
from service.service_layer.processor import BatchProcessor, Stopped


class Transient(Exception):
    pass


class FakeHandler:
    def __init__(self, *, transient_failures: int = 0, poison: frozenset[int] = frozenset()):
        self.transient_failures = transient_failures
        self.poison = poison
        self.applied: list[int] = []
        self.dead: list[tuple[int, str]] = []
        self.calls = 0
        self.retried = asyncio.Event()

    async def handle(self, records: Sequence[InputRecord]) -> BatchReport:
        self.calls += 1
        if self.calls >= 2:
            self.retried.set()
        if self.transient_failures:
            self.transient_failures -= 1
            raise Transient("database away")
        if any(r.offset in self.poison for r in records):
            raise ValueError("a bug meets this record")
        self.applied += [r.offset for r in records]
        return BatchReport()

    async def dead_letter_only(self, record: InputRecord, why: Invalid) -> BatchReport:
        self.dead.append((record.offset, why.reason))
        return BatchReport()


def _records(n: int) -> list[InputRecord]:
    return [InputRecord("t", 0, i, b"k", b"{}") for i in range(n)]


def _processor(handler: FakeHandler) -> BatchProcessor:
    return BatchProcessor(
        cast(BatchHandler, handler),
        lambda e: isinstance(e, Transient),
        initial_backoff=0.001,
        max_backoff=0.002,
    )


async def test_transient_failures_are_retried_never_skipped() -> None:
    handler = FakeHandler(transient_failures=3)
    await _processor(handler).process(_records(3))
    assert handler.calls == 4
    assert handler.applied == [0, 1, 2]
    assert handler.dead == []


async def test_a_poison_record_is_set_aside_and_the_others_applied() -> None:
    handler = FakeHandler(poison=frozenset({1}))
    await _processor(handler).process(_records(3))
    assert handler.applied == [0, 2]
    assert handler.dead == [(1, "processing_error")]


@pytest.mark.parametrize("size", [1, 3])
async def test_shutdown_during_a_retry_leaves_the_batch_for_redelivery(size: int) -> None:
    handler = FakeHandler(transient_failures=10**6)
    processor = BatchProcessor(
        cast(BatchHandler, handler),
        lambda e: isinstance(e, Transient),
        initial_backoff=0.05,
        max_backoff=0.05,
    )
    task = asyncio.create_task(processor.process(_records(size)))
    await handler.retried.wait()  # it is retrying
    processor.stop()
    with pytest.raises(Stopped):
        await task
    assert handler.applied == []
    assert handler.dead == []  # nothing dead-lettered on the way out
