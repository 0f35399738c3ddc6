"""Garbage-collection pauses and memory, measured in the process and logged at shutdown."""

from __future__ import annotations

import gc
import resource
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
