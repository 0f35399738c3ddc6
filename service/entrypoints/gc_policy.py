"""When the garbage collector runs: between batches, not in the middle of one."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Young collections stay automatic and small (at most this many new container objects).
YOUNG_THRESHOLD = 10_000
# Older generations are collected only here: effectively never by the interpreter itself.
NEVER = 1_000_000_000


class GcPolicy:
    """A batch holds tens of thousands of objects while it is applied; a full collection in
    the middle of it walks all of them (tens of milliseconds, measured by `make bench`). Once
    the batch is committed, reference counting has freed them, so a full collection walks only
    what lives on: here it runs then, at most every `interval` seconds. The interpreter keeps
    collecting the youngest generation by itself, in small steps."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last = clock()

    def install(self) -> GcPolicy:
        gc.set_threshold(YOUNG_THRESHOLD, NEVER, NEVER)
        return self

    def between_batches(self) -> None:
        now = self._clock()
        if now - self._last >= self._interval:
            found = gc.collect()
            self._last = self._clock()
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "full collection: %d unreachable objects in %.1f ms",
                    found,
                    (self._last - now) * 1000,
                )

    async def when_idle(self) -> None:
        """Without batches (an idle service), what the relay, the charger and the HTTP side
        leave behind is still collected."""
        while True:
            await asyncio.sleep(self._interval * 5)
            self.between_batches()
