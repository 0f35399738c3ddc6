"""Garbage-collection pauses and memory, measured in the process and logged at shutdown."""

from __future__ import annotations

import gc
import random
import resource
import statistics
import time
from typing import Any


def rss_kb() -> int:
    """The resident set size now, in KiB (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() // 1024


class GcPauses:
    """Times every collection through gc.callbacks (a few microseconds of overhead each)."""

    longest_ms: float
    collections: int
    longest_ms_by_generation: list[float]

    def __init__(self) -> None:
        self.reset()
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            took = (time.perf_counter() - self._started) * 1000
            self.longest_ms = max(self.longest_ms, took)
            generation = info.get("generation", 2)
            self.longest_ms_by_generation[generation] = max(
                self.longest_ms_by_generation[generation], took
            )
            self.collections += 1
            self._started = None

    def reset(self) -> None:
        """Forgets what was measured so far (the start-up collection, say)."""
        self.longest_ms = 0.0
        self.collections = 0
        self.longest_ms_by_generation = [0.0, 0.0, 0.0]

    def install(self) -> GcPauses:
        gc.callbacks.append(self)
        return self


class ApplyTimes:
    """How long applying one input batch takes: a uniform sample (reservoir sampling, at most
    `size` durations) over every batch since the last reset, so it costs the same whatever the
    number of batches."""

    batches: int
    _sample: list[float]

    def __init__(self, size: int = 1024, seed: int = 0) -> None:
        self._size = size
        self._random = random.Random(seed)  # a sample, not a secret
        self.reset()

    def add(self, seconds: float) -> None:
        self.batches += 1
        if len(self._sample) < self._size:
            self._sample.append(seconds)
            return
        slot = self._random.randrange(self.batches)
        if slot < self._size:
            self._sample[slot] = seconds

    def median_ms(self) -> float | None:
        """None before the first batch."""
        return statistics.median(self._sample) * 1000 if self._sample else None

    def reset(self) -> None:
        self.batches = 0
        self._sample = []


def runtime_entry(
    pauses: GcPauses, apply_times: ApplyTimes, rss_kb_at_start: int | None
) -> dict[str, Any]:
    """The `runtime` log entry written at shutdown (`make bench` reads it)."""
    median = apply_times.median_ms()
    return {
        "longest_gc_pause_ms": round(pauses.longest_ms, 3),
        "gc_collections": pauses.collections,
        "longest_gc_pause_ms_by_generation": [
            round(ms, 3) for ms in pauses.longest_ms_by_generation
        ],
        "median_batch_apply_ms": None if median is None else round(median, 3),
        "batches_applied": apply_times.batches,
        "rss_kb_at_start": rss_kb_at_start,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
