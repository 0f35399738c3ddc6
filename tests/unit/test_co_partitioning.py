"""Co-partitioned assignment of the input topics, and the consumer's part in holding records
back (kept and handed in again, committed no further than the first), with fakes."""

from __future__ import annotations

import random
import string
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from service.config import Topics
from service.entrypoints.consumer import ASSIGNORS, not_co_partitioned
from service.entrypoints.held_records import Pending
from service.service_layer.alignment import Held
from service.service_layer.ports import InputRecord

TOPICS = Topics()
BAL = TOPICS.wallet_balance_changed
SET = TOPICS.settings_updated


# --- the assignor --------------------------------------------------------------------------------


class Cluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))


def _member_ids(rng: random.Random, n: int) -> list[str]:
    """Ids as the coordinator makes them: the client id and a random suffix."""
    return [
        f"aiokafka-0.14.0-{''.join(rng.choices(string.ascii_lowercase + string.digits, k=12))}"
        for _ in range(n)
    ]


def _assign(
    assignor: type[AbstractPartitionAssignor], members: int, partitions: int, seed: int
) -> dict[str, set[TopicPartition]]:
    rng = random.Random(seed)
    metadata = {}
    for member in _member_ids(rng, members):
        topics = [BAL, SET]
        rng.shuffle(topics)  # the order of a member's subscription does not matter
        metadata[member] = assignor.metadata(topics)
    assigned = assignor.assign(cast(Any, Cluster(partitions)), metadata)
    return {m: set(a.partitions()) for m, a in assigned.items()}


def _co_partitioned(assignment: dict[str, set[TopicPartition]], partitions: int) -> bool:
    every = [tp for tps in assignment.values() for tp in tps]
    wanted = {TopicPartition(t, p) for t in (BAL, SET) for p in range(partitions)}
    assert sorted(every) == sorted(wanted), "each partition exactly once"
    return all(not_co_partitioned(tps, (BAL, SET)) is None for tps in assignment.values())


def test_range_gives_each_member_the_same_partitions_of_both_topics() -> None:
    for members in range(1, 8):
        for partitions in range(1, 13):
            for seed in range(3):
                assignment = _assign(RangePartitionAssignor, members, partitions, seed)
                assert _co_partitioned(assignment, partitions), (members, partitions, assignment)


def test_round_robin_does_not() -> None:
    """What the range assignor replaces (and what the test above would catch)."""
    split = [
        (members, partitions)
        for members in range(2, 8)
        for partitions in range(1, 13)
        if not _co_partitioned(
            _assign(RoundRobinPartitionAssignor, members, partitions, 0), partitions
        )
    ]
    assert (2, 1) in split
    assert (4, 6) in split


def test_the_service_uses_the_range_assignor_alone() -> None:
    """Range alone: with round-robin listed second, aiokafka 0.14's group join rebalanced
    endlessly when two instances started together."""
    assert (RangePartitionAssignor,) == ASSIGNORS


def test_an_assignment_that_splits_a_partition_number_is_named() -> None:
    ok = {TopicPartition(BAL, 1), TopicPartition(SET, 1)}
    assert not_co_partitioned(ok, (BAL, SET)) is None
    split = {TopicPartition(BAL, 1), TopicPartition(SET, 2)}
    assert not_co_partitioned(split, (BAL, SET)) == f"{BAL}: [1]; {SET}: [2]"


# --- the consumer keeping held records -----------------------------------------------------------


def _raw(topic: str, partition: int, *offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(topic, partition, o, 0, 0, b"k", b"{}", None, 1, 2, []) for o in offsets]


def _records(raw: list[ConsumerRecord[bytes, bytes]]) -> list[InputRecord]:
    return [InputRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in raw]


def _offsets(records: list[InputRecord]) -> list[tuple[str, int]]:
    return [(r.topic, r.offset) for r in records]


B0, B1, S0 = TopicPartition(BAL, 0), TopicPartition(BAL, 1), TopicPartition(SET, 0)


def test_without_held_records_the_positions_are_committed() -> None:
    pending = Pending()
    raw = _raw(BAL, 0, 1, 2) + _raw(SET, 0, 7)
    pending.fetched(_records(raw))
    assert pending.settle(_records(raw), []) is None
    assert not pending


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_is_committed_up_to_its_first_held_record_and_no_further() -> None:
    clock = _Clock()
    pending = Pending(clock)
    raw = _raw(BAL, 0, 10, 11, 12, 13, 14) + _raw(SET, 0, 5, 6) + _raw(BAL, 1, 3)
    pending.fetched(_records(raw))
    held = [Held(BAL, 0, 11, "a", 0.4), Held(BAL, 0, 13, "a", 0.0)]
    assert pending.settle(_records(raw), held) == {B0: 11, S0: 7, B1: 4}
    assert _offsets(pending.records()) == [(BAL, 11), (BAL, 13)]
    assert pending.retry_in == pytest.approx(0.4)

    # The next batch brings a settings record of partition 0 (it may show that topic read far
    # enough): the held records go in again, ahead of the new ones of their partition.
    raw = _raw(BAL, 0, 15) + _raw(SET, 0, 7)
    pending.fetched(_records(raw))
    given = pending.due(_records(raw)) + _records(raw)
    assert _offsets(given) == [(BAL, 11), (BAL, 13), (BAL, 15), (SET, 7)]
    still = [Held(BAL, 0, 13, "a", 0.0)]  # 11 applied; 13 now waits behind another record
    assert pending.settle(given, still) == {B0: 13, S0: 8, B1: 4}
    # Held only behind a record that was decided meanwhile: decided again at once, not at
    # the next fetch (which may be long in coming).
    assert pending.retry_in == 0.0

    given = pending.due()  # decided again: applied
    assert _offsets(given) == [(BAL, 13)]
    assert pending.settle(given, []) == {B0: 16, S0: 8, B1: 4}  # all the way, once
    assert not pending
    assert pending.settle([], []) is None


def test_a_held_record_goes_in_again_only_when_it_may_be_decided_differently() -> None:
    clock = _Clock()
    pending = Pending(clock)
    raw = _raw(BAL, 0, 10, 11) + _raw(BAL, 1, 3, 4)
    pending.fetched(_records(raw))
    # 10 waits for the settings topic (0.5 s left), 11 behind it (same customer); 3 waits too.
    held = [Held(BAL, 0, 10, "a", 0.5), Held(BAL, 0, 11, "a", 0.0), Held(BAL, 1, 3, "b", 0.3)]
    assert pending.settle(_records(raw), held) == {B0: 10, B1: 3}
    assert pending.retry_in == pytest.approx(0.3)

    # More balances of the same partitions cannot show the settings topic read further: the
    # held records stay out of the batch, and stay held (and uncommitted).
    clock.now += 0.1
    raw = _raw(BAL, 0, 12) + _raw(BAL, 1, 5)
    pending.fetched(_records(raw))
    assert pending.due(_records(raw)) == []
    assert pending.settle(_records(raw), []) == {B0: 10, B1: 3}
    assert _offsets(pending.records()) == [(BAL, 10), (BAL, 11), (BAL, 3)]
    assert pending.retry_in == pytest.approx(0.2)
    # a record held behind 10 in the new batch is kept in offset order with the others
    raw = _raw(BAL, 0, 13)
    pending.fetched(_records(raw))
    assert pending.settle(_records(raw), [Held(BAL, 0, 13, "a", 0.0)]) == {B0: 10, B1: 3}
    assert _offsets(pending.records()) == [(BAL, 10), (BAL, 11), (BAL, 13), (BAL, 3)]

    # b's bound runs out first: only partition 1 goes in again
    clock.now += 0.2
    assert pending.retry_in == pytest.approx(0.2)  # as of the last settle
    assert _offsets(pending.due()) == [(BAL, 3)]
    assert pending.settle(pending.due(), []) == {B0: 10, B1: 6}
    assert pending.retry_in == pytest.approx(0.2)  # a's bound: 0.5 s from 100.0

    # a settings record of partition 0 sends a's records in again, in their order
    raw = _raw(SET, 0, 7)
    pending.fetched(_records(raw))
    assert _offsets(pending.due(_records(raw))) == [(BAL, 10), (BAL, 11), (BAL, 13)]
    # a's bound runs out: in again without any batch
    clock.now += 0.2
    assert _offsets(pending.due()) == [(BAL, 10), (BAL, 11), (BAL, 13)]
    pending.recount()
    assert pending.retry_in == 0.0


def test_an_assignment_change_forgets_the_held_records() -> None:
    pending = Pending()
    raw = _raw(BAL, 0, 1, 2)
    pending.fetched(_records(raw))
    pending.settle(_records(raw), [Held(BAL, 0, 1, "a", 0.3)])
    pending.reset()
    assert not pending
    assert pending.retry_in is None
    assert pending.settle([], []) is None


def test_only_a_record_of_the_other_aligned_topic_sends_held_records_in_again() -> None:
    clock = _Clock()
    inv = TOPICS.invoice_status_changed
    pending = Pending(clock, aligned=(BAL, SET))
    raw = _raw(BAL, 0, 10) + _raw(inv, 0, 4)
    pending.fetched(_records(raw))
    # 10 waits for the settings topic; its bound, as the alignment counted it, runs out at 100.3
    held = [Held(BAL, 0, 10, "a", 0.5, until=100.3), Held(inv, 0, 4, "a", 0.0)]
    pending.settle(_records(raw), held)
    assert pending.retry_in == pytest.approx(0.3)  # `until`, not now + retry_in
    # an invoice status (not aligned) or a balance cannot show the settings topic read further
    for topic in (inv, BAL):
        assert pending.due(_records(_raw(topic, 0, 20))) == []
    assert _offsets(pending.due(_records(_raw(SET, 0, 1)))) == [(BAL, 10), (inv, 4)]
    clock.now = 100.3
    assert _offsets(pending.due()) == [(BAL, 10), (inv, 4)]
