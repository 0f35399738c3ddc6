"""Runs batches through the handler: retries what is transient, isolates what is poison.

The consumer commits a batch's offsets only after `process` returns, so everything here must
either apply every record (or dead-letter it, or report it held: the consumer then commits
nothing at or after it) or raise `Stopped` and let the records come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from service.contract.codec import Invalid
from service.service_layer.handlers import BatchHandler, BatchReport, DailyKeyConflict
from service.service_layer.ports import InputRecord

log = logging.getLogger(__name__)


class Stopped(Exception):
    """Shutdown was requested while a batch waited to be retried: nothing of it is committed."""


class BatchProcessor:
    def __init__(
        self,
        handler: BatchHandler,
        is_transient: Callable[[BaseException], bool],
        *,
        initial_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self._handler = handler
        self._is_transient = is_transient
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def process(self, records: Sequence[InputRecord]) -> BatchReport:
        try:
            return await self._retrying(records)
        except Stopped:
            raise
        except Exception as exc:
            if len(records) == 1:
                return await self._poison(records[0], exc)
            log.warning(
                "batch of %d failed (%s: %s); applying its records one by one",
                len(records),
                type(exc).__name__,
                exc,
            )
        report = BatchReport()
        for record in records:
            try:
                part = await self._retrying([record])
            except Stopped:
                raise
            except Exception as exc:
                part = await self._poison(record, exc)
            report.counts.update(part.counts)
            report.log.extend(part.log)
            report.stripe_claims += part.stripe_claims
            report.outbox_rows += part.outbox_rows
            report.held += part.held
        return report

    async def _poison(self, record: InputRecord, exc: Exception) -> BatchReport:
        """A record that fails for a reason that will not go away is dead-lettered."""
        log.error(
            "dead-lettering %s[%d]@%d after %s: %s",
            record.topic,
            record.partition,
            record.offset,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        why = Invalid("processing_error", f"{type(exc).__name__}: {exc}"[:500])
        return await self._retrying_call(lambda: self._handler.dead_letter_only(record, why))

    async def _retrying(self, records: Sequence[InputRecord]) -> BatchReport:
        return await self._retrying_call(lambda: self._handler.handle(records))

    async def _retrying_call(self, call: Callable[[], Awaitable[BatchReport]]) -> BatchReport:
        backoff = self._initial_backoff
        attempt = 0
        while True:
            if self._stopping.is_set():
                raise Stopped
            try:
                return await call()
            except DailyKeyConflict as exc:
                log.warning("daily key conflict %s; retrying the batch", exc)
            except Exception as exc:
                if not self._is_transient(exc):
                    raise
                attempt += 1
                log.warning(
                    "transient failure (%s: %s), attempt %d; retrying in %.2fs",
                    type(exc).__name__,
                    exc,
                    attempt,
                    backoff,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self._max_backoff)
