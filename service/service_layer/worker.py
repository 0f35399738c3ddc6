"""A background loop shared by the outbox relay and the Stripe charger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Worker:
    """Runs rounds of work: again at once while a round did something, else after a wake-up
    or the poll interval; with capped backoff after a failure (the work is retried, never
    skipped). On stop it finishes the round in flight and, with `drain`, keeps going until a
    round finds nothing to do."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[int]],
        *,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
        drain: bool = False,
    ) -> None:
        self._name = name
        self._work = work
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._drain = drain
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self, timeout: float) -> bool:
        """True when the loop ended by itself within `timeout`; else it is cancelled."""
        self._stopping.set()
        self._wake.set()
        if self._task is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            return False
        return True

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            self._wake.clear()  # before the round: a wake during it is not lost
            try:
                done = await self._work()
                backoff = 0.1
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning(
                    "%s: %s: %s; retrying in %.1fs", self._name, type(exc).__name__, exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if self._stopping.is_set() and not (self._drain and done):
                return
            if done:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)


class Background:
    """Something whose work runs in a Worker (`_worker`): woken, started and stopped with it.
    `_unfinished` says, with the timeout, what is left when a stop runs out of time."""

    _worker: Worker
    _unfinished: str

    def wake(self) -> None:
        """Called when there may be work (rows committed, say)."""
        self._worker.wake()

    def start(self) -> None:
        self._worker.start()

    async def stop(self, timeout: float) -> None:
        """Finishes what is in flight (within `timeout`), then stops."""
        if not await self._worker.stop(timeout):
            log.warning(self._unfinished, timeout)
