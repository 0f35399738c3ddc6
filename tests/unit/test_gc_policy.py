"""The garbage collector runs full collections between batches, at most once per interval."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from service.entrypoints.gc_policy import NEVER, YOUNG_THRESHOLD, GcPolicy


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    seen: list[int] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            seen.append(info["collected"])

    saved = gc.get_threshold()
    gc.callbacks.append(callback)
    try:
        yield seen
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*saved)


def test_young_collections_stay_automatic_and_old_ones_are_ours(
    full_collections: list[int],
) -> None:
    GcPolicy().install()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, NEVER, NEVER)
    for _ in range(50_000):
        [[]]  # noqa: B018 - container allocations: young collections run, no full one
    assert full_collections == []


def test_at_most_one_full_collection_per_interval(full_collections: list[int]) -> None:
    now = [100.0]
    policy = GcPolicy(interval=1.0, clock=lambda: now[0])
    policy.between_batches()  # 0 s since the policy started: too soon
    assert full_collections == []
    now[0] = 101.5
    policy.between_batches()
    policy.between_batches()  # right after the last one: too soon
    assert len(full_collections) == 1
    now[0] = 102.6
    policy.between_batches()
    assert len(full_collections) == 2


def test_a_full_collection_frees_cycles(full_collections: list[int]) -> None:
    now = [0.0]
    policy = GcPolicy(interval=1.0, clock=lambda: now[0])
    gc.disable()  # no automatic collection may find them first
    try:
        for _ in range(10):
            a: list[Any] = []
            a.append(a)  # a cycle that reference counting cannot free
        del a
        now[0] = 5.0
        policy.between_batches()
    finally:
        gc.enable()
    assert full_collections
    assert full_collections[-1] >= 10
