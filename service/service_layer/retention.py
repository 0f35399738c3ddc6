"""Retention: what is deleted, when, and why nothing that a replay or the charger needs goes.

Every table grew for ever before this. Each kind of row now has a horizon, in days counted on
the service's clock (`Settings.clock()`, so AUTO_TOPUP_CLOCK_OFFSET_SECONDS moves it too), and
the pruner deletes what is past it, in small batches (docs/operating.md "Retention"). 0 days
keeps a kind for ever. `wallets` is never pruned: it is the state itself (settings, card, last
balance, the highest sequence and version seen, the newest event applied), and it is what makes
every replayed event stale.

Decisions, kind by kind:

- **daily_keys** (AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS, default 35). A daily key is the
  idempotency of "one top-up a day": while an event can still act on its business date, the key
  is what stops a second decision, whichever consumer group or replay brings the event. The
  old-day guard (`rules._evaluate`, judged on the event's own date) refuses every event whose
  business date is older than the customer's today minus AUTO_TOPUP_OLD_DAY_WINDOW_DAYS (W);
  a customer's today is at least the UTC date minus one (UTC-12), so no event can ever act on
  a date before `UTC today - W - 1`, and the batch handler reads keys from `UTC today - W - 2`
  on. The key of such a date protects nothing any more: a replay of its events, however it
  comes (a reset consumer group, `auto-topup replay`, a counter reset that makes old events
  apply again), is blocked as `old_business_date` before the key is looked at. So settled keys
  (phase `done`) are pruned once their date is older than `UTC today - days`, and `days` must
  be 0 or at least W + 3 (config.DAILY_KEY_MARGIN_DAYS: one more day than the handler reads,
  for clocks that disagree); a shorter setting stops start-up. The default keeps five weeks:
  `auto-topup explain` shows the last 7 business days, and support and reconciliation look
  back a month. Keys the charger or an operator still needs (claimed, charging, needs_review)
  are never pruned, whatever their age.
  Raising W later re-opens days whose keys may be gone already: raise the retention first, and
  W only once the keys of the wider window have been kept that long.
- **outbox, output events** (AUTO_TOPUP_RETENTION_OUTBOX_DAYS, default 7, from publication).
  Nothing re-derives an output from its outbox row: a decision is made once per daily key
  (claimed in the same transaction as the row; a key already taken publishes nothing), the
  charger publishes only on leaving the phase `charging`, `charges resolve` only from
  `needs_review`. A published row is kept for operators only (what went out, when), a week.
  Unpublished rows (waiting, retrying, set aside) are never pruned.
- **outbox, dead letters** (AUTO_TOPUP_RETENTION_DEAD_LETTERS_DAYS, default 21, from
  publication). A dead letter's row (dedupe key dlq/<topic>/<partition>/<offset>/<sha256>) is
  what stops a replay of the input from dead-lettering the same record twice: its record is
  rejected again on every pass (a rejection changes no state). So it is kept at least as long
  as the input topics keep records. Kafka deletes whole segments: a record stays readable for
  up to retention.ms plus segment.ms (7 + 7 days by default) after its segment began, and a
  producer's timestamp may run ahead of the broker's; 21 days leaves a week past that. Input
  topics that keep records longer (a larger retention.ms, retention by size only, compaction,
  tiered storage) need a larger setting, or 0.
- **decision_summary** (AUTO_TOPUP_RETENTION_DECISION_SUMMARY_DAYS, default 400, from the
  decision). Support's "why not topped up": a few rows per customer, upserted, so it only grows
  with customers; a row whose last decision is over a year old (and a month) answers no
  question about today. No decision reads it.
- **open_invoices, closed** (AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS, from the close). A closed
  invoice counts against nothing (`max_open_invoices` counts open ones) and gets no
  `invoice_overdue` notice; its row only lets a status redelivered later be told apart as
  `unknown_invoice`, which it is without the row too. Kept as long as the daily key of its
  day, for support. Open invoices are never pruned, whatever their age.
- **charge_audit, counter_audit** (AUTO_TOPUP_RETENTION_AUDIT_DAYS, default 0: kept for ever).
  Who moved money or state by hand, and why: few rows, kept as long as the business must keep
  its records; set it (e.g. 400, or 2,557 for seven years) to bound them.
- **customer_history** (AUTO_TOPUP_RETENTION_HISTORY_DAYS, default 90, from the line's time).
  The support page's history (migration 0013): one row per decision and applied settings
  event. Three months answer "why not topped up?"; no decision reads it.

How it runs:

- In batches of AUTO_TOPUP_RETENTION_BATCH_SIZE (1,000) rows, one short statement each (its own
  transaction), rows picked by an index of migration 0009 and locked with SKIP LOCKED: it never
  waits for a row the consumer, the charger or the relay holds, and they wait at most one
  batch for it. A run goes on, kind by kind, until a batch finds fewer rows than its size.
- One pruner at a time: a session advisory lock on the pruner's own connection (not one of the
  pool's); an instance that finds it taken skips its run. Correct without it, too: two pruners
  that ran together would skip each other's locked rows, and never delete a row twice.
- Every AUTO_TOPUP_RETENTION_INTERVAL_SECONDS (600) inside each instance, first at start-up
  (0: never inside the service), and by hand with `auto-topup prune [--dry-run]`.
- Metrics: rows pruned per kind, the time of the last run, and (at scrape time, from the
  database, whoever prunes) how long the oldest row past its horizon has been waiting; the
  alert AutoTopupRetentionBehind fires when that stays above 6 hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from service.service_layer.ports import Clock

if TYPE_CHECKING:
    from service.config import Settings

log = logging.getLogger(__name__)


# What the pruner deletes, in the order a run takes them; the names are the `table` label of
# the metrics and the rows of `auto-topup prune`.
class PruneTarget(StrEnum):
    DAILY_KEYS = "daily_keys"  # settled daily keys (phase done)
    OUTBOX_EVENTS = "outbox_events"  # published output events
    OUTBOX_DEAD_LETTERS = "outbox_dead_letters"  # published dead letters
    DECISION_SUMMARY = "decision_summary"  # support's last decision of each kind
    CHARGE_AUDIT = "charge_audit"  # who settled a Stripe charge by hand, and why
    COUNTER_AUDIT = "counter_audit"  # who reset a runaway counter, and why
    CUSTOMER_HISTORY = "customer_history"  # the support page's history of each customer
    OPEN_INVOICES = "open_invoices"  # requested invoices closed (paid or void)


DAILY_KEYS = PruneTarget.DAILY_KEYS
OUTBOX_EVENTS = PruneTarget.OUTBOX_EVENTS
OUTBOX_DEAD_LETTERS = PruneTarget.OUTBOX_DEAD_LETTERS
DECISION_SUMMARY = PruneTarget.DECISION_SUMMARY
CHARGE_AUDIT = PruneTarget.CHARGE_AUDIT
COUNTER_AUDIT = PruneTarget.COUNTER_AUDIT
CUSTOMER_HISTORY = PruneTarget.CUSTOMER_HISTORY
OPEN_INVOICES = PruneTarget.OPEN_INVOICES
TARGETS = tuple(PruneTarget)

# What each target's horizon is counted from, for people (`auto-topup prune`, docs/operating.md).
COUNTED_FROM = {
    DAILY_KEYS: "business date (UTC days), settled keys only",
    OUTBOX_EVENTS: "publication, output events only",
    OUTBOX_DEAD_LETTERS: "publication, dead letters only",
    DECISION_SUMMARY: "last decision",
    CHARGE_AUDIT: "resolution",
    COUNTER_AUDIT: "reset",
    CUSTOMER_HISTORY: "the line's time",
    OPEN_INVOICES: "closing, closed invoices only",
}


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of row is kept, in days (0: for ever), and the batch size."""

    daily_keys_days: int = 35
    outbox_events_days: int = 7
    dead_letters_days: int = 21
    decision_summary_days: int = 400
    audit_days: int = 0
    batch_size: int = 1000
    history_days: int = 90  # last: the positional order above is older

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(
            daily_keys_days=settings.retention_daily_keys_days,
            outbox_events_days=settings.retention_outbox_days,
            dead_letters_days=settings.retention_dead_letters_days,
            decision_summary_days=settings.retention_decision_summary_days,
            audit_days=settings.retention_audit_days,
            batch_size=settings.retention_batch_size,
            history_days=settings.retention_history_days,
        )

    def days(self, target: str) -> int:
        by_target: dict[str, int] = {
            DAILY_KEYS: self.daily_keys_days,
            OUTBOX_EVENTS: self.outbox_events_days,
            OUTBOX_DEAD_LETTERS: self.dead_letters_days,
            DECISION_SUMMARY: self.decision_summary_days,
            CHARGE_AUDIT: self.audit_days,
            COUNTER_AUDIT: self.audit_days,
            CUSTOMER_HISTORY: self.history_days,
            OPEN_INVOICES: self.daily_keys_days,
        }
        return by_target[target]

    def horizons(self, now: datetime) -> dict[str, datetime | None]:
        """Per target, the instant before which its rows are pruned (None: kept for ever).
        Daily keys by business date: midnight UTC of the first date kept."""
        found: dict[str, datetime | None] = {}
        for target in TARGETS:
            days = self.days(target)
            if not days:
                found[target] = None
            elif target == DAILY_KEYS:
                found[target] = _midnight(now.astimezone(UTC).date() - timedelta(days=days))
            else:
                found[target] = now - timedelta(days=days)
        return found

    def overdue_seconds(self, target: str, oldest: datetime | date | None, now: datetime) -> float:
        """How long ago the oldest row past its horizon (`oldest`: its time, or a daily key's
        business date) became prunable; 0 when there is none."""
        if oldest is None or not self.days(target):
            return 0.0
        days = timedelta(days=self.days(target))
        if isinstance(oldest, datetime):
            since = oldest + days
        else:  # a business date: prunable once the UTC date is `days` after the next one
            since = _midnight(oldest + timedelta(days=1)) + days
        return max((now - since).total_seconds(), 0.0)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class RetentionStore(Protocol):
    """The database side (service/adapters/postgres/retention.py)."""

    async def try_lock(self, wait_seconds: float = 0.0) -> bool:
        """Takes the one-pruner-at-a-time lock, waiting at most `wait_seconds`."""
        ...

    async def unlock(self) -> None: ...

    async def prune(self, target: str, before: datetime, limit: int) -> int:
        """Deletes up to `limit` rows of `target` past `before`; returns how many."""
        ...

    async def count(self, target: str, before: datetime) -> int:
        """How many rows of `target` are past `before` (what a run would delete)."""
        ...


@dataclass
class PruneReport:
    """What one run did (or, dry, would do)."""

    now: datetime
    horizons: dict[str, datetime | None]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TARGETS, 0))
    dry_run: bool = False
    busy: bool = False  # another pruner held the lock: nothing was done
    stopped: bool = False  # stopped before the end (the service shuts down)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def prune(
    store: RetentionStore,
    retention: Retention,
    now: datetime,
    *,
    dry_run: bool = False,
    lock_wait_seconds: float = 0.0,
    on_batch: Callable[[str, int], None] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> PruneReport:
    """One run: every target down to its horizon, batch by batch, under the pruner's lock (a
    dry run only counts, and takes no lock)."""
    report = PruneReport(now, retention.horizons(now), dry_run=dry_run)
    if dry_run:
        for target, before in report.horizons.items():
            if before is not None:
                report.counts[target] = await store.count(target, before)
        return report
    if not await store.try_lock(lock_wait_seconds):
        report.busy = True
        return report
    try:
        for target, before in report.horizons.items():
            while before is not None:
                if stopping():
                    report.stopped = True
                    return report
                deleted = await store.prune(target, before, retention.batch_size)
                report.counts[target] += deleted
                if on_batch is not None and deleted:
                    on_batch(target, deleted)
                if deleted < retention.batch_size:
                    break
                await asyncio.sleep(0)  # let the consumer's work in between batches
    finally:
        await store.unlock()
    return report


class Pruner:
    """Runs `prune` on a connection of its own, now (`run_once`) or every `interval` seconds
    from start-up (`start`); a run that fails is logged and tried again at the next one."""

    def __init__(
        self,
        open_store: Callable[[], AbstractAsyncContextManager[RetentionStore]],
        retention: Retention,
        clock: Clock,
        *,
        interval: float,
        on_batch: Callable[[str, int], None] | None = None,
        on_run: Callable[[PruneReport], None] | None = None,
    ) -> None:
        self._open_store = open_store
        self._retention = retention
        self._clock = clock
        self._interval = interval
        self._on_batch = on_batch
        self._on_run = on_run
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> PruneReport:
        async with self._open_store() as store:
            report = await prune(
                store,
                self._retention,
                self._clock(),
                on_batch=self._on_batch,
                stopping=self._stopping.is_set,
            )
        if report.busy:
            log.debug("retention: another instance is pruning; skipped")
        elif report.total:
            log.info(
                "retention: pruned %s",
                ", ".join(f"{t}={n}" for t, n in report.counts.items() if n),
                extra={"retention": dict(report.counts)},
            )
        if self._on_run is not None and not report.busy and not report.stopped:
            self._on_run(report)
        return report

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self, timeout: float) -> None:
        """Ends the loop: a run in flight stops after its current batch (within `timeout`,
        else it is cancelled; a batch is one statement, so nothing is half done)."""
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the next run tries again; the gauge shows the lag
                log.warning("retention: run failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
