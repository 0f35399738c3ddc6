"""Runs batches through the handler: retries what is transient, isolates what is poison.

The consumer commits a batch's offsets only after `process` returns, so everything here must
either apply every record (or dead-letter it, or report it held: the consumer then commits
nothing at or after it) or raise `Stopped` and let the records come again.

A batch that fails for a reason a retry cannot fix is split to find the records that cause
it (see `_isolate`): for one such record in n, about log2(n) + 2 more transactions (at most
13 for 2,000 records of different customers, 17 for 2,000 records of 40 customers; then one
for its dead letter), instead of one per record. Within one customer (and the customers that
share a partner's wallet with it), the search is made of trials that are rolled back, and
the other records are applied together once the failing ones are set aside, as if they had
never been fetched (`_one_group`; ADR 0011).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from service.contract.codec import Invalid
from service.domain.reasons import DeadLetterReason
from service.service_layer.handlers import BatchHandler, BatchReport, DailyKeyConflict
from service.service_layer.parts import Unit, flat, grouped, halves, units
from service.service_layer.ports import InputRecord

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Failures of one group that its trials did not show again, before it is split committing.
_MISSES = 2


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

    async def _isolate(self, records: Unit, failure: Exception) -> BatchReport:
        """Applies `records`, which failed together with `failure`, but the records causing it.

        Bisection over groups (a customer's records, with those of the customers that share a
        partner's wallet with it: different groups can be applied in any order): each attempt
        is the first half of the suspects, with the pending groups (known to be outside the
        failure); success moves the search to the other half, failure to this half. The one
        group left is searched by `_one_group`. What remains of the others is applied last,
        split again, half by half, if it fails too (more than one such record)."""
        report = BatchReport()
        joined = await self._joined([r for _, r in records])
        # `why`: how the suspects failed together with the pending groups (None: not tried
        # since the last success).
        suspects, pending = units(records, joined), list[Unit]()
        why: Exception | None = failure
        while len(suspects) > 1:
            left, right = halves(suspects)
            outcome = await self._attempt(flat([*pending, *left]))
            if isinstance(outcome, BatchReport):
                _merge(report, outcome)
                pending, suspects, why = [], right, None
            else:
                pending, suspects, why = pending + right, left, outcome
        unit, rest = suspects[0], sorted(p for u in pending for p in u)
        rest_failure: Exception | None = None
        if rest:  # the group failed with them: do they go through without it?
            outcome = await self._attempt([r for _, r in rest])
            if isinstance(outcome, BatchReport):
                _merge(report, outcome)
                rest = []
            else:
                rest_failure = outcome
            why = None  # the group was not tried alone
        _merge(report, await self._one_group(unit, why))
        if rest:
            _merge(report, await self._halving(rest, rest_failure, joined))
        return report

    async def _halving(
        self, records: Unit, failure: Exception | None, joined: dict[str, str]
    ) -> BatchReport:
        """The records (`failure`: they failed together already), else each half in turn: for
        more than one failing record, about 2 transactions per record found and level (a
        batch that fails whole costs about twice its records, not n·log n)."""
        if failure is None:
            outcome = await self._attempt([r for _, r in records])
            if isinstance(outcome, BatchReport):
                return outcome
            failure = outcome
        groups = units(records, joined)
        if len(groups) == 1:
            return await self._one_group(records, failure)
        report = BatchReport()
        for side in halves(groups):
            _merge(report, await self._halving(sorted(p for u in side for p in u), None, joined))
        return report

    async def _joined(self, records: Sequence[InputRecord]) -> dict[str, str]:
        """Each customer that shares a partner's wallet with another one of `records` (as
        payer or paid), to its group's first customer: a group's records are searched together
        and applied in the handler's order. Empty if that cannot be read (then each customer
        is a group: a partner's balance could then be applied after a top-up it pays). Not
        read for one customer's records: they are one group already."""
        if len({record.key for record in records}) == 1:
            return {}
        try:
            links = await self._retrying_call(lambda: self._handler.partner_links(records))
        except Stopped:
            raise
        except Exception as exc:  # the search goes on without it
            log.warning("partners not read (%s: %s): split by customer", type(exc).__name__, exc)
            return {}
        return grouped(links)

    async def _one_group(self, unit: Unit, failure: Exception | None) -> BatchReport:
        """One group's records, of which some fail (`failure`: they failed alone already).

        Each failing record is found by trials, transactions that are rolled back (nothing of
        the group is applied while the search goes on), and dead-lettered once confirmed;
        then the rest is applied in one transaction, in its own event-time order: as if the
        failing records had never been fetched (ADR 0011). Were parts applied while a failing
        record was among them, its place in its partition would have ordered them (a
        settings record dated later, ahead of an on-switch and an off-switch in its partition,
        would keep both behind the balances of their instant; the on-switch would then top up
        a low balance that neither the batch without the failure nor the good records alone
        would top up). A failure that trials do not show again (at commit, or gone) is
        searched again; after `_MISSES` such, the group is split committing what goes through
        (`_committing`)."""
        report = BatchReport()
        good, lo, misses = self._in_apply_order(unit), 0, 0  # its first `lo` went through
        hi = None if failure is None else len(good)  # its first `hi` failed with `failure`
        tried = False  # whether `failure` came from a trial (else from a real attempt)
        while good:
            if hi is None or failure is None:
                outcome = await self._attempt([r for _, r in good])
                if isinstance(outcome, BatchReport):
                    _merge(report, outcome)
                    break
                hi, failure, tried = len(good), outcome, False
            found = await self._culprit(good, failure, lo, hi, tried)
            if found is None:
                misses += 1
                if misses > _MISSES:
                    log.warning("a failure that trials do not show: splitting, committing")
                    _merge(report, await self._committing(good))
                    break
                lo, hi, failure = 0, None, None
                continue
            at, why = found
            _merge(report, await self._poison(good[at][1], why))
            streak = at == lo  # it failed right after what went through: the next may too
            rest = self._in_apply_order(good[:at] + good[at + 1 :])
            lo = at if rest[:at] == good[:at] else 0
            good, hi, failure = rest, None, None
            if streak and lo < len(good):  # each failing (a release's bug): the next alone
                outcome = await self._attempt([r for _, r in good[: lo + 1]], trial=True)
                if isinstance(outcome, BatchReport):
                    lo += 1
                else:
                    hi, failure, tried = lo + 1, outcome, True
        return report

    async def _culprit(
        self, records: Unit, failure: Exception, lo: int, hi: int, tried: bool
    ) -> tuple[int, Exception] | None:
        """Where the shortest failing prefix of `records` (in apply order) ends, and how it
        fails, by halving with trials: its first `lo` records went through together, its first
        `hi` failed with `failure` in the last transaction (a trial if `tried`). Confirmed by
        two trials one after the other (the last of the search and one more): the prefix that
        ends with the record fails, the one without it goes through; a record that failed
        alone, once, is not tried again (as before). None: the failure did not come again in
        a trial (it went away, or comes only at commit)."""
        why = failure
        if not tried and (lo, hi) != (0, 1):  # a real transaction failed: does a trial?
            outcome = await self._attempt([r for _, r in records[:hi]], trial=True)
            if isinstance(outcome, BatchReport):
                return None
            why = outcome
            lo = min(lo, hi - 1)  # (lo == hi: all but the last went through, then all failed)
        failed_last = True
        while True:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                outcome = await self._attempt([r for _, r in records[:mid]], trial=True)
                if isinstance(outcome, BatchReport):
                    lo, failed_last = mid, False
                else:
                    hi, why, failed_last = mid, outcome, True
            if not failed_last:  # the last trial: the first `lo` went through; with one more?
                outcome = await self._attempt([r for _, r in records[:hi]], trial=True)
                if isinstance(outcome, BatchReport):
                    return None
                why = outcome
            elif lo > 0:  # the last: the first `hi` failed; without the last of them?
                outcome = await self._attempt([r for _, r in records[:lo]], trial=True)
                if not isinstance(outcome, BatchReport):  # an earlier one fails now
                    lo, hi, why = 0, lo, outcome
                    continue
            return hi - 1, why

    async def _committing(self, records: Unit) -> BatchReport:
        """The records (in apply order), else each half in turn, committing what goes through:
        for a failure that trials do not show (one at commit). A record set aside may then
        shape the order of the others, as before ADR 0011."""
        outcome = await self._attempt([r for _, r in records])
        if isinstance(outcome, BatchReport):
            return outcome
        if len(records) == 1:
            return await self._poison(records[0][1], outcome)
        half = len(records) // 2
        report = await self._committing(records[:half])
        _merge(report, await self._committing(self._in_apply_order(records[half:])))
        return report

    def _in_apply_order(self, unit: Unit) -> Unit:
        """A group's records in the order the handler applies them (event time, settings
        first at the same instant; contract v2): a prefix of them is what the handler applies
        first (the other topic's marks an attempt raised stay raised, so a balance would not
        wait for settings of its instant left out)."""
        unit = sorted(unit)  # the batch's order, which the handler's order starts from
        return [unit[i] for i in self._handler.apply_order([record for _, record in unit])]

    async def _attempt(
        self, records: Sequence[InputRecord], *, trial: bool = False
    ) -> BatchReport | Exception:
        """One transaction of `records` (a `trial`: rolled back), retried while the failure is
        transient: its report, or the failure that a retry cannot fix. Raises Stopped."""
        try:
            return await self._retrying_call(lambda: self._handler.handle(records, trial=trial))
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

    async def _retrying_call(self, call: Callable[[], Awaitable[_T]]) -> _T:
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


def _merge(into: BatchReport, part: BatchReport) -> None:
    into.counts.update(part.counts)
    into.log.extend(part.log)
    into.stripe_claims += part.stripe_claims
    into.outbox_rows += part.outbox_rows
    into.held += part.held
