"""Applies a batch of input records in one transaction: state, daily keys and outbox rows."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import partial

from service.config import Topics
from service.contract.codec import Invalid, decode_balance, decode_invoice_status, decode_settings
from service.domain import rules
from service.domain.model import BalanceChanged, InvoiceStatusChanged, SettingsUpdated, Wallet
from service.domain.reasons import StaleReason
from service.service_layer import invoices, topups
from service.service_layer.aligned import apply_aligned
from service.service_layer.alignment import Alignment, Held
from service.service_layer.event_order import apply_order, in_event_time
from service.service_layer.outbox import dead_letter_record
from service.service_layer.ports import (
    BatchStore,
    Claim,
    Clock,
    CountKey,
    DecisionLog,
    InputRecord,
    OutboxRecord,
    SettingsKey,
    Tracer,
    UnitOfWorkFactory,
    settings_key,
)

Event = BalanceChanged | SettingsUpdated | InvoiceStatusChanged


@dataclass(slots=True)
class BatchReport:
    counts: Counter[CountKey] = field(default_factory=Counter)
    log: list[DecisionLog] = field(default_factory=list)
    stripe_claims: int = 0
    outbox_rows: int = 0
    # Records not applied (waiting for the other input topic, or behind one of their customer
    # that waits): the consumer commits nothing at or after them and hands them in again.
    held: list[Held] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    """What one batch collects before it is written in one transaction."""

    wallets: dict[str, Wallet]
    now: datetime
    changed: set[str] = field(default_factory=set)
    claims: list[Claim] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    report: BatchReport = field(default_factory=BatchReport)
    # Settings events of this batch that the rules rejected before (come again): never
    # applied now; and those rejected in this batch, to remember.
    rejected: set[SettingsKey] = field(default_factory=set)
    new_rejections: list[tuple[SettingsKey, str]] = field(default_factory=list)
    invoices: invoices.InvoiceWrites = field(default_factory=invoices.InvoiceWrites)
    trial: bool = False  # rolled back (BatchHandler.handle)

    def partner_of(self, customer_id: str) -> str | None:
        """The partner that pays for this customer's top-ups, by its settings so far."""
        wallet = self.wallets.get(customer_id)
        settings = wallet.settings if wallet is not None else None
        return settings.partner_id if settings is not None else None


class BatchHandler:
    """Turns consumed records into one transaction; I/O only through the unit of work."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        policy: rules.Policy,
        topics: Topics,
        tracer: Tracer | None = None,
        alignment: Alignment | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._policy = policy
        self._topics = topics
        self._tracer = tracer
        # Without one (replay, tests), records are ordered but never wait.
        self._alignment = alignment

    def decode(self, record: InputRecord) -> Event | Invalid:
        if record.topic == self._topics.wallet_balance_changed:
            return decode_balance(record.value, record.key)
        if record.topic == self._topics.settings_updated:
            return decode_settings(record.value, record.key)
        if record.topic == self._topics.invoice_status_changed:
            return decode_invoice_status(record.value, record.key)
        return Invalid("unknown_topic", f"no handler for topic {record.topic!r}")

    def apply_order(self, records: Sequence[InputRecord]) -> list[int]:
        """The indexes of `records` in the order `handle` applies them (event time)."""
        return apply_order([(r, self.decode(r)) for r in records], self._topics.settings_updated)

    async def handle(self, records: Sequence[InputRecord], *, trial: bool = False) -> BatchReport:
        """`records` applied in one transaction. A `trial` does it all, then rolls it back with
        what the alignment noted (and makes no trace span): it only tells whether it fails."""
        now = self._clock()
        decoded = [(record, self.decode(record)) for record in records]
        ids = {e.customer_id for _, e in decoded if not isinstance(e, Invalid)}
        # The oldest business date that can still trigger, wherever the customer lives.
        since = now.date() - timedelta(days=self._policy.old_day_window_days + 2)
        align = self._alignment
        # One customer's settings and balances in event-time order (contract v2).
        ordered = in_event_time(decoded, self._topics.settings_updated)
        with align.trial(decoded) if trial and align else contextlib.nullcontext():
            if align is not None:
                align.fetched(decoded, now + self._policy.future_skew, now)
            async with self._uow() as uow:
                batch = await self._read(uow.store, decoded, ids, since, now)
                batch.trial = trial
                if align is None:
                    for record, event in ordered:
                        self._apply(batch, record, event)
                else:
                    horizon = now + self._policy.future_skew
                    held = batch.report.held
                    apply = partial(self._apply, batch)
                    apply_aligned(ordered, align, horizon, apply, held, batch.partner_of)
                await self._write(uow.store, batch)
                if not trial:
                    await uow.commit()
        batch.report.outbox_rows = len(batch.outbox)
        return batch.report

    async def _read(
        self,
        store: BatchStore,
        decoded: Sequence[tuple[InputRecord, Event | Invalid]],
        ids: set[str],
        since: date,
        now: datetime,
    ) -> _Batch:
        """Locks the batch's wallets and their partners', and finds the settings events that
        the rules rejected before."""
        # Customers and their partners in one locking statement, in one order (lanes.py); a
        # partner the store did not lock with them (a new one) is locked after them.
        named = topups.partner_ids((e for _, e in decoded), {})
        wallets = await store.lock_wallets(ids | named, since, partners=True) if ids else {}
        partner_ids = topups.partner_ids((e for _, e in decoded), wallets) - wallets.keys()
        if partner_ids:
            wallets.update(await store.lock_wallets(partner_ids, since))
        batch = _Batch(wallets, now)
        await invoices.load(store, wallets, (e for _, e in decoded))
        keys = [settings_key(r, e) for r, e in decoded if isinstance(e, SettingsUpdated)]
        if keys:
            batch.rejected = await store.rejected_settings(keys)
        return batch

    @staticmethod
    async def _write(store: BatchStore, batch: _Batch) -> None:
        """State, daily keys, outbox rows and decisions, in the batch's transaction."""
        if batch.changed:
            await store.save_wallets([batch.wallets[i] for i in sorted(batch.changed)])
        if batch.claims:
            taken = await store.claim_daily_keys(batch.claims)
            wanted = {(c.topup.customer_id, c.topup.business_date) for c in batch.claims}
            if wanted - taken:
                # Only possible if the row lock was bypassed: never publish a second decision
                # for a daily key.
                raise DailyKeyConflict(sorted(wanted - taken))
        await invoices.write(store, batch.invoices)
        if batch.outbox:
            await store.add_outbox(batch.outbox)
        if batch.new_rejections:
            await store.add_rejected_settings(batch.new_rejections, batch.now)
        if batch.report.log:
            await store.record_decisions(batch.report.log, batch.now)

    def _apply(self, batch: _Batch, record: InputRecord, event: Event | Invalid) -> None:
        """One record: the rule decides, the batch collects state, claims and outbox rows."""
        if isinstance(event, Invalid | InvoiceStatusChanged):  # a status never triggers
            invoices.outside_rules(batch, record, event, self._policy, self._reject)
            return
        if self._rejected_before(batch, record, event):
            return
        wallet = batch.wallets.get(event.customer_id) or Wallet(event.customer_id)
        if isinstance(event, BalanceChanged):
            outcome = rules.apply_balance(wallet, event, batch.now, self._policy)
        else:
            outcome = rules.apply_settings(wallet, event, batch.now, self._policy)
        if outcome.status is rules.Status.REJECTED:
            assert outcome.reason is not None
            self._reject(batch, record, Invalid(outcome.reason, outcome.detail), event)
            return
        if outcome.decision is rules.Decision.TRIGGERED and self._held(
            batch, record, event, outcome.topup.partner_id if outcome.topup else None
        ):
            return
        report = batch.report
        report.counts[CountKey.consumed(record.topic, outcome.status)] += 1
        if outcome.wallet is not wallet and outcome.wallet != wallet:
            batch.wallets[event.customer_id] = outcome.wallet
            batch.changed.add(event.customer_id)
        self._logged(batch, record, event, outcome)

    def _logged(
        self, batch: _Batch, record: InputRecord, event: Event, outcome: rules.Outcome
    ) -> None:
        """What an applied or stale record leaves: its log line, its notices, its decision."""
        report = batch.report
        if outcome.status is rules.Status.STALE:
            report.log.append(DecisionLog.of(record, event, "stale", outcome.reason))
            return
        if outcome.notices:
            batch.outbox += topups.notice_records(self._topics, outcome.notices, batch.now)
        if outcome.decision is not rules.Decision.NOT_DUE:
            # (not due: the common case, a balance above the threshold; nothing to log)
            self._decided(batch, record, event, outcome)
        elif isinstance(event, SettingsUpdated):  # for the customer's history (history.py)
            report.log.append(DecisionLog.of(record, event, "settings_applied", None))

    @staticmethod
    def _rejected_before(batch: _Batch, record: InputRecord, event: Event) -> bool:
        """A settings record rejected when it first came: the same outcome whenever it comes
        again (at any offset), even if later records (a card saved since) would let it apply
        now. Counted and logged as stale."""
        if not (
            batch.rejected
            and isinstance(event, SettingsUpdated)
            and settings_key(record, event) in batch.rejected
        ):
            return False
        batch.report.counts[CountKey.consumed(record.topic, rules.Status.STALE)] += 1
        batch.report.log.append(
            DecisionLog.of(record, event, "stale", StaleReason.REDELIVERED_DEAD_LETTER)
        )
        return True

    def _held(self, batch: _Batch, record: InputRecord, event: Event, partner: str | None) -> bool:
        """Whether a due record waits for the other input topic, or behind a held record that
        its partner's balance depends on (see alignment.py)."""
        align = self._alignment
        held = (
            align.decide(record, event.customer_id, event.occurred_at, partner) if align else None
        )
        if held is not None:
            batch.report.held.append(held)
        return held is not None

    def _decided(
        self, batch: _Batch, record: InputRecord, event: Event, outcome: rules.Outcome
    ) -> None:
        """A decision to log: blocked, suppressed, or a top-up to settle through its rail."""
        report = batch.report
        report.counts[CountKey.decision(outcome.decision)] += 1
        settings = outcome.wallet.settings
        logged = DecisionLog.of(
            record,
            event,
            outcome.decision.value,
            outcome.reason,
            settings.payment_method.value if settings else None,
        )
        if outcome.topup is None:
            report.log.append(logged)
            return
        tracer = None if batch.trial else self._tracer
        trace = tracer.decided(record, event.customer_id, "triggered") if tracer else ()
        done = topups.settle(
            outcome.topup, batch.wallets, self._policy, self._topics, batch.now, trace
        )
        claim = done.claim
        batch.claims.append(claim)
        for changed in done.changed:
            batch.wallets[changed.customer_id] = changed
            batch.changed.add(changed.customer_id)
        invoices.note_requested(batch.invoices, batch.wallets, done, batch.now)
        if done.record is None:
            report.stripe_claims += 1
        else:
            batch.outbox.append(done.record)
        batch.outbox += topups.notice_records(self._topics, done.notices, batch.now)
        report.log.append(
            replace(
                logged,
                outcome="failed" if claim.result == "failed" else "triggered",
                reason=claim.reason,
                detail=claim.detail or "",
                method=done.topup.payment_method.value,
                business_date=outcome.topup.business_date,
            )
        )

    def _reject(
        self, batch: _Batch, record: InputRecord, why: Invalid, event: Event | None = None
    ) -> None:
        batch.outbox.append(dead_letter_record(self._topics.dead_letter, record, why, batch.now))
        if isinstance(event, SettingsUpdated):  # rejected by the rules: remembered by identity
            key = settings_key(record, event)
            batch.rejected.add(key)
            batch.new_rejections.append((key, why.reason))
        batch.report.counts[CountKey.dead_letter(why.reason)] += 1
        batch.report.log.append(
            replace(DecisionLog.of(record, event, "dead_lettered", why.reason), detail=why.detail)
        )

    async def partner_links(self, records: Sequence[InputRecord]) -> list[tuple[str, str]]:
        """(customer, partner) for each customer of `records` that a partner pays, by its
        stored settings or settings in `records` (read as a trial reads: locked, rolled back)."""
        events = [self.decode(r) for r in records]
        ids = {e.customer_id for e in events if not isinstance(e, Invalid)}
        async with self._uow() as uow:
            wallets = await uow.store.lock_wallets(ids, self._clock().date()) if ids else {}
        return topups.partner_links(events, wallets)

    async def dead_letter_only(self, record: InputRecord, why: Invalid) -> BatchReport:
        """Dead-letters one record in a transaction of its own (it could not be processed)."""
        if self._alignment is not None:  # its customer's later records must not wait for it
            self._alignment.forget(record.topic, record.partition, record.offset)
        batch = _Batch({}, self._clock())
        self._reject(batch, record, why)
        async with self._uow() as uow:
            await uow.store.add_outbox(batch.outbox)
            await uow.commit()
        batch.report.outbox_rows = len(batch.outbox)
        return batch.report


class DailyKeyConflict(RuntimeError):
    """A daily key was taken by another transaction: the batch must be retried."""
