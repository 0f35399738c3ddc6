"""A fetched batch in lanes: disjoint by partition number, each lane in its records' order, and
one report of all of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.service_layer.alignment import Held
from service.service_layer.handlers import BatchReport
from service.service_layer.lanes import applied, merged, split
from service.service_layer.ports import CountKey, InputRecord
from service.service_layer.processor import Stopped

TOPICS = ("wallet-balance-changed", "settings-updated", "invoice-status-changed")
RECORDS = st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(0, 11)), max_size=40).map(
    lambda pairs: [InputRecord(t, p, n, f"k{p}".encode(), b"{}") for n, (t, p) in enumerate(pairs)]
)


@given(RECORDS, st.integers(1, 5))
def test_each_partition_number_goes_to_one_lane_in_order(
    records: list[InputRecord], lanes: int
) -> None:
    groups = split(records, lanes)
    assert sorted((r for g in groups for r in g), key=lambda r: r.offset) == records
    assert all(groups) or records == []  # no empty lane
    assert len(groups) <= lanes
    for group in groups:
        assert [r.offset for r in group] == sorted(r.offset for r in group)  # order kept
    lane_of: dict[int, int] = {}
    for n, group in enumerate(groups):
        for r in group:
            # Every topic's partition p is in one lane: a customer's records stay together.
            assert lane_of.setdefault(r.partition, n) == n


def test_one_lane_is_the_batch_itself() -> None:
    records = [InputRecord("t", p, p, None, b"") for p in range(3)]
    assert split(records, 1) == [records]


def test_the_merged_report_adds_the_lanes_up() -> None:
    stale = CountKey.consumed("settings-updated", "stale")
    one = BatchReport(Counter({stale: 2}), stripe_claims=1, outbox_rows=3)
    two = BatchReport(Counter({stale: 1}), outbox_rows=2)
    two.held.append(Held("t", 1, 5, "c", 0.5))
    both = merged([one, two])
    assert both.counts[stale] == 3
    assert (both.stripe_claims, both.outbox_rows) == (1, 5)
    assert both.held == two.held
    assert merged([one]) is one


def _lanes(
    outcomes: dict[int, BaseException | None],
) -> Callable[[Sequence[InputRecord]], Awaitable[BatchReport]]:
    """A processor whose lane (by its records' partition) succeeds or raises as told."""

    async def process(records: Sequence[InputRecord]) -> BatchReport:
        failure = outcomes[records[0].partition % 2]
        if failure is not None:
            raise failure
        report = BatchReport()
        report.outbox_rows = len(records)
        return report

    return process


BOTH = [InputRecord("t", p, p, None, b"") for p in range(4)]


async def test_every_lane_is_applied_and_reported_as_one() -> None:
    report = await applied(_lanes({0: None, 1: None}), BOTH, 2)
    assert report.outbox_rows == 4


async def test_a_lanes_real_failure_wins_over_anothers_shutdown() -> None:
    with pytest.raises(RuntimeError, match="database"):
        await applied(_lanes({0: Stopped(), 1: RuntimeError("database")}), BOTH, 2)
    with pytest.raises(Stopped):
        await applied(_lanes({0: Stopped(), 1: None}), BOTH, 2)
