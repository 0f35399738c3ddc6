"""Runs batches through the handler: retries what is transient, isolates what is poison.

The consumer commits a batch's offsets only after `process` returns, so everything here must
either apply every record (or dead-letter it, or report it held: the consumer then commits
nothing at or after it) or raise `Stopped` and let the records come again.

A batch that fails for a reason a retry cannot fix is split to find the record that causes
it (see `_isolate`): for one such record in n, at most about log2(n) + 1 more transactions
(12 for 2,000 records of different customers; then one for its dead letter), instead of one
per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from service.contract.codec import Invalid
from service.domain.reasons import DeadLetterReason
from service.service_layer.handlers import BatchHandler, BatchReport, DailyKeyConflict
from service.service_layer.ports import InputRecord

log = logging.getLogger(__name__)


class Stopped(Exception):
    """Shutdown was requested while a batch waited to be retried: nothing of it is committed."""


# One customer's records of a batch, in the batch's order, as (position in the batch, record).
_Unit = list[tuple[int, InputRecord]]


@dataclass(slots=True)
class _Search:
    """Where the search for the failing record stands.

    `suspects` holds it (each unit one customer's records). `pending`: units of other
    customers known to be outside it, not applied yet; they join the next attempt (different
    customers can be applied in any order). `after`: the suspect customer's records that
    follow the suspects; they wait until the record is found (one customer's records are
    applied in their order). `alone`: the last attempt that failed was the one suspect alone.
    """

    suspects: list[_Unit]
    pending: list[_Unit] = field(default_factory=list)
    after: _Unit = field(default_factory=list)
    last_failed: bool = True
    alone: bool = False
    failure: Exception | None = None

    def size(self) -> int:
        return sum(len(u) for u in self.suspects)


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
        outcome = await self._attempt(records)
        if isinstance(outcome, BatchReport):
            return outcome
        if len(records) == 1:
            return await self._poison(records[0], outcome)
        log.warning(
            "batch of %d failed (%s: %s); splitting it to find the record that causes it",
            len(records),
            type(outcome).__name__,
            outcome,
        )
        return await self._isolate(list(enumerate(records)), outcome)

    async def _isolate(self, records: _Unit, failure: Exception) -> BatchReport:
        """Applies `records`, which failed together with `failure`, but the record causing it.

        Bisection over customers: each attempt is the first half of the suspects (plus the
        pending units, which are known good); success moves the search to the other half,
        failure to this half. Once one customer is left, its records are split the same way in
        the order the handler applies them (event time). The record found is confirmed (it
        failed alone, or it made a set fail that succeeds without it) before it is
        dead-lettered; a record that succeeds alone (a failure that did not come from it) is
        applied. What remains is applied last, split again, half by half, if it fails too (more
        than one such record)."""
        report = BatchReport()
        search = _Search(_units(records), failure=failure)
        while search.size() > 1:
            if len(search.suspects) == 1:  # one customer: split its records, in event time
                unit = self._in_apply_order(search.suspects[0])
                half = len(unit) // 2
                left, right = [unit[:half]], [unit[half:]]
            else:
                left, right = _halves(search.suspects)
            outcome = await self._attempt(_flat([*search.pending, *left]))
            if isinstance(outcome, BatchReport):
                _merge(report, outcome)
                search.pending, search.suspects = [], right
                search.last_failed = False
            else:
                if len(search.suspects) == 1:
                    search.after = right[0] + search.after
                else:
                    search.pending += right
                search.alone = not search.pending and _size(left) == 1
                search.suspects, search.last_failed, search.failure = left, True, outcome
        suspect = search.suspects[0][0]
        rest = sorted([*(p for u in search.pending for p in u), *search.after])
        if search.last_failed and (search.alone or (search.pending and not search.after)):
            # Failed alone; or failed with `pending`, which now goes through without it.
            if search.pending:
                outcome = await self._attempt([r for _, r in rest])
                if not isinstance(outcome, BatchReport):  # more than one record fails
                    _merge(report, await self._confirmed(suspect[1]))
                    _merge(report, await self._halving(rest, outcome))
                    return report
                _merge(report, outcome)
                rest = []
            assert search.failure is not None
            _merge(report, await self._poison(suspect[1], search.failure))
        else:
            _merge(report, await self._confirmed(suspect[1]))
        if rest:
            _merge(report, await self._halving(rest, None))
        return report

    async def _halving(self, records: _Unit, failure: Exception | None) -> BatchReport:
        """The records (`failure`: they failed together already), else each half in turn: for
        more than one failing record, about 2 transactions per record found and level (a
        batch that fails whole costs about twice its records, not n·log n)."""
        if failure is None:
            outcome = await self._attempt([r for _, r in records])
            if isinstance(outcome, BatchReport):
                return outcome
            failure = outcome
        if len(records) == 1:
            return await self._poison(records[0][1], failure)
        units = _units(records)
        if len(units) == 1:  # one customer: its first half, then the other
            records = self._in_apply_order(records)
            half = len(records) // 2
            parts = [records[:half], records[half:]]
        else:
            parts = [sorted(p for u in side for p in u) for side in _halves(units)]
        report = BatchReport()
        for part in parts:
            _merge(report, await self._halving(part, None))
        return report

    def _in_apply_order(self, unit: _Unit) -> _Unit:
        """One customer's records in the order the handler applies them (event time, settings
        first at the same instant; contract v2). A split of them is then always a prefix of
        what the handler would apply, never a balance without the settings before it (the other
        topic's marks an attempt raised stay raised, so the balance would not wait for them)."""
        return [unit[i] for i in self._handler.apply_order([record for _, record in unit])]

    async def _confirmed(self, record: InputRecord) -> BatchReport:
        """The record alone: applied if it goes through, dead-lettered if it fails."""
        outcome = await self._attempt([record])
        if isinstance(outcome, BatchReport):
            return outcome
        return await self._poison(record, outcome)

    async def _attempt(self, records: Sequence[InputRecord]) -> BatchReport | Exception:
        """One transaction of `records`, retried while the failure is transient: its report,
        or the failure that a retry cannot fix. Raises Stopped."""
        try:
            return await self._retrying_call(lambda: self._handler.handle(records))
        except Stopped:
            raise
        except Exception as exc:
            return exc

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
        why = Invalid(DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:500])
        return await self._retrying_call(lambda: self._handler.dead_letter_only(record, why))

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


def _units(records: _Unit) -> list[_Unit]:
    """The records grouped by key (the customer), each group in the batch's order; records
    without a key stand alone."""
    units: dict[object, _Unit] = {}
    for position, record in records:
        key: object = record.key if record.key is not None else ("no key", position)
        units.setdefault(key, []).append((position, record))
    return list(units.values())


def _size(units: Sequence[_Unit]) -> int:
    return sum(len(u) for u in units)


def _halves(units: list[_Unit]) -> tuple[list[_Unit], list[_Unit]]:
    """Two non-empty runs of units with about half of the records each."""
    total, count = _size(units), 0
    for i, unit in enumerate(units[:-1]):
        count += len(unit)
        if count * 2 >= total:
            return units[: i + 1], units[i + 1 :]
    return units[:-1], units[-1:]


def _flat(units: Sequence[_Unit]) -> list[InputRecord]:
    """The records of `units` in the batch's order."""
    return [record for _, record in sorted((p for u in units for p in u), key=lambda p: p[0])]


def _merge(into: BatchReport, part: BatchReport) -> None:
    into.counts.update(part.counts)
    into.log.extend(part.log)
    into.stripe_claims += part.stripe_claims
    into.outbox_rows += part.outbox_rows
    into.held += part.held
