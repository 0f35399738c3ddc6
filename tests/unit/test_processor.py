"""Retries of what is transient, isolation of what is poison, and shutdown, with a fake handler."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contract.codec import Invalid
from service.service_layer.alignment import Held
from service.service_layer.handlers import BatchHandler, BatchReport
from service.service_layer.ports import CountKey, InputRecord
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

    @staticmethod
    def apply_order(records: Sequence[InputRecord]) -> list[int]:
        return list(range(len(records)))  # the order given

    async def handle(self, records: Sequence[InputRecord], *, trial: bool = False) -> BatchReport:
        self.calls += 1
        if self.calls >= 2:
            self.retried.set()
        if self.transient_failures:
            self.transient_failures -= 1
            raise Transient("database away")
        if any(r.offset in self.poison for r in records):
            raise ValueError("a bug meets this record")
        if not trial:
            self.applied += [r.offset for r in records]
        return BatchReport()

    @staticmethod
    async def partner_links(records: Sequence[InputRecord]) -> list[tuple[str, str]]:
        return []  # no partners

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


# --- finding the failing record by bisection ------------------------------------------------


class KeyedHandler:
    """Fails any transaction that holds a poison record (or, `flaky`, the first one of all);
    applies the others in the order given; holds the records named in `hold`."""

    def __init__(
        self,
        poison: frozenset[int] = frozenset(),
        *,
        hold: frozenset[int] = frozenset(),
        flaky: bool = False,
        together: frozenset[int] = frozenset(),
    ) -> None:
        self.poison = poison
        self.hold = hold
        self.flaky = flaky
        self.together = together  # these fail only when all of them are in one transaction
        self.applied: list[InputRecord] = []
        self.dead: list[int] = []
        self.transactions = 0
        self.trials = 0

    @staticmethod
    def apply_order(records: Sequence[InputRecord]) -> list[int]:
        return list(range(len(records)))  # the order given

    async def handle(self, records: Sequence[InputRecord], *, trial: bool = False) -> BatchReport:
        self.transactions += 1
        self.trials += trial
        offsets = {r.offset for r in records}
        if self.flaky:
            self.flaky = False
            raise ValueError("once")
        if offsets & self.poison or (self.together and self.together <= offsets):
            raise ValueError("a bug meets this record")
        report = BatchReport()
        for r in records:
            if r.offset in self.hold:
                report.held.append(Held(r.topic, r.partition, r.offset, str(r.key), 0.0))
            elif not trial:  # rolled back
                self.applied.append(r)
                report.counts[CountKey.consumed(r.topic, "applied")] += 1
        return report

    async def partner_links(self, records: Sequence[InputRecord]) -> list[tuple[str, str]]:
        self.transactions += 1  # a read, rolled back
        return []  # no partners

    async def dead_letter_only(self, record: InputRecord, why: Invalid) -> BatchReport:
        self.transactions += 1
        assert why.reason == "processing_error"
        self.dead.append(record.offset)
        report = BatchReport()
        report.counts[CountKey.dead_letter(why.reason)] += 1
        return report


def _keyed(n: int, customers: int | None = None) -> list[InputRecord]:
    """n records; record i belongs to customer i % customers (each its own by default)."""
    m = customers or n
    return [InputRecord("t", 0, i, f"c{i % m}".encode(), b"{}") for i in range(n)]


def _run(handler: KeyedHandler, records: list[InputRecord]) -> BatchReport:
    processor = BatchProcessor(cast(BatchHandler, handler), lambda e: False)
    return asyncio.run(processor.process(records))


def _check_applied_once_in_order(handler: KeyedHandler, records: list[InputRecord]) -> None:
    offsets = [r.offset for r in handler.applied]
    assert len(offsets) == len(set(offsets)), "a record applied twice"
    assert sorted(offsets + handler.dead) == [
        r.offset for r in records if r.offset not in handler.hold
    ]
    by_customer: dict[bytes | None, list[int]] = {}
    for r in handler.applied:
        by_customer.setdefault(r.key, []).append(r.offset)
    for seen in by_customer.values():
        assert seen == sorted(seen), "one customer's records applied out of order"


@pytest.mark.parametrize("bad", [0, 1, 2, 999, 1000, 1337, 1998, 1999])
def test_one_bad_record_in_2000_costs_at_most_14_more_transactions(bad: int) -> None:
    records = _keyed(2000)
    handler = KeyedHandler(frozenset({bad}))
    report = _run(handler, records)
    assert handler.dead == [bad]
    _check_applied_once_in_order(handler, records)
    assert report.counts == {
        CountKey.consumed("t", "applied"): 1999,
        CountKey.dead_letter("processing_error"): 1,
    }
    # The first transaction failed; then one to read which customers share a partner, at
    # most 13 to find the record and apply the others (log2(2000) < 11 halvings, one to
    # apply what was set apart without it, one to try it alone), and the dead letter's own.
    assert handler.transactions - 1 - 1 <= 1 + 13


@pytest.mark.parametrize("bad", [0, 7, 500, 1999])
def test_one_customer_bad_record_found_in_order(bad: int) -> None:
    """All 2,000 records of one customer: split in their order, ~2·log2(n) at most."""
    records = _keyed(2000, customers=1)
    handler = KeyedHandler(frozenset({bad}))
    _run(handler, records)
    assert handler.dead == [bad]
    _check_applied_once_in_order(handler, records)
    assert handler.transactions - 1 <= 2 * 11 + 1


def test_a_failure_that_does_not_come_back_dead_letters_nothing() -> None:
    records = _keyed(100, customers=7)
    handler = KeyedHandler(flaky=True)
    _run(handler, records)
    assert handler.dead == []
    _check_applied_once_in_order(handler, records)


def test_two_records_that_fail_only_together_are_both_applied_apart() -> None:
    records = _keyed(64)
    handler = KeyedHandler(together=frozenset({10, 50}))
    _run(handler, records)
    # Either both go through in different transactions, or one is set aside: never both.
    assert len(handler.dead) <= 1
    _check_applied_once_in_order(handler, records)


def test_held_records_are_reported_from_every_part() -> None:
    records = _keyed(40, customers=5)
    handler = KeyedHandler(frozenset({23}), hold=frozenset({3, 17, 38}))
    report = _run(handler, records)
    assert sorted(h.offset for h in report.held) == [3, 17, 38]
    assert handler.dead == [23]
    _check_applied_once_in_order(handler, records)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(2, 120),
    customers=st.integers(1, 12),
    data=st.data(),
)
def test_any_bad_records_are_set_aside_and_every_other_applied_once(
    n: int, customers: int, data: st.DataObject
) -> None:
    bad = data.draw(st.frozensets(st.integers(0, n - 1), max_size=4))
    hold = data.draw(st.frozensets(st.integers(0, n - 1), max_size=3)) - bad
    records = _keyed(n, customers)
    handler = KeyedHandler(bad, hold=hold)
    report = _run(handler, records)
    assert sorted(handler.dead) == sorted(bad)
    _check_applied_once_in_order(handler, records)
    # A held record is reported each time it is handed in and held (once here, or again
    # when a failed attempt that held it is redone): what counts is that none is lost.
    assert {h.offset for h in report.held} == hold


async def test_shutdown_while_isolating_raises_stopped() -> None:
    class StopsMidway(KeyedHandler):
        async def handle(
            self, records: Sequence[InputRecord], *, trial: bool = False
        ) -> BatchReport:
            if self.transactions == 3:
                processor.stop()
                self.transactions += 1
                raise Transient("database away")
            return await super().handle(records, trial=trial)

    handler = StopsMidway(frozenset({5}))
    processor = BatchProcessor(
        cast(BatchHandler, handler), lambda e: isinstance(e, Transient), initial_backoff=0.001
    )
    with pytest.raises(Stopped):
        await processor.process(_keyed(64))
    assert handler.dead == []


@pytest.mark.parametrize("customers", [None, 1, 8])
def test_a_batch_that_fails_whole_costs_about_twice_its_records(customers: int | None) -> None:
    """A release with a bug every record meets: each is dead-lettered, in about 2n
    transactions (one per record would be n; searching for each in turn, n·log n)."""
    records = _keyed(256, customers)
    handler = KeyedHandler(frozenset(range(256)))
    _run(handler, records)
    assert sorted(handler.dead) == list(range(256))
    assert handler.transactions <= 3 * 256 + 2 * 8
