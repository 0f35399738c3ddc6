"""A failed batch's split keeps each customer's records in the handler's event-time order
(contract v2): a differential property over the real handler, the in-memory unit of work and
an alignment on an injected monotonic clock, against a reference that never fails and never
waits. The worked example is test_alignment.py's
test_a_failed_batch_split_never_applies_a_balance_without_its_settings_before; its helpers
are reused here."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from service.domain import rules
from service.domain.model import BalanceChanged, SettingsUpdated
from service.domain.reasons import DeadLetterReason
from service.service_layer.handlers import BatchHandler, BatchReport
from service.service_layer.ports import CountKey, InputRecord
from service.service_layer.processor import BatchProcessor
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.fakes import FakeDatabase, fake_uow_factory
from tests.unit.test_alignment import (
    BAL,
    BOUND,
    SET,
    TOPICS,
    Log,
    Monotonic,
    T,
    _alignment,
    _FailsWith,
    where,
)


class _Log(Log):
    """Log's records with the event ids and amounts a test chooses (examples must replay)."""

    def balance_of(
        self, customer: str, amount: str, at: datetime, partition: int, event_id: str
    ) -> InputRecord:
        body = balance_wire(customer, amount, at=at, event_id=event_id)
        return self._record(BAL, partition, customer, dumps(body))

    def settings_of(
        self,
        customer: str,
        at: datetime,
        partition: int,
        event_id: str,
        auto: bool,
        threshold: str,
        partner: str | None = None,
    ) -> InputRecord:
        paid: dict[str, Any] = (
            {"method": "master_account", "partner_id": partner} if partner else {}
        )
        body = settings_wire(
            customer,
            trigger="100.00",
            threshold=threshold,
            auto=auto,
            at=at,
            event_id=event_id,
            **paid,
        )
        return self._record(SET, partition, customer, dumps(body))


# --- the examples --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    prior: list[InputRecord]  # applied before, the same way in both runs
    batch: list[InputRecord]  # one fetched batch, in the broker's order
    poison: frozenset[int]  # positions in `batch` of the records that fail whatever happens
    # Due records wait for the other topic (else the alignment's bound is 0). Not with a
    # partner: the batch is in the broker's order, not in event time across partitions, and a
    # held top-up is decided in event time against its partner's records (ADR 0004), while
    # the reference applies them in batch order (test_partner_wait.py covers the wait).
    waits: bool = True

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis prints this
        printer.text(repr(self))

    def __repr__(self) -> str:
        lines = ["prior:" if self.waits else "prior (nothing waits):", *map(_shown, self.prior)]
        lines.append("batch:")
        lines += [
            _shown(r) + (" POISON" if i in self.poison else "") for i, r in enumerate(self.batch)
        ]
        return "\n".join(lines)


def _shown(record: InputRecord) -> str:
    """SET[0]@1 a e3 T+0s auto=off threshold=10.00, or BAL[0]@2 a e1 T-1s 5.00."""
    assert record.value is not None
    body = json.loads(record.value)
    at = datetime.fromisoformat(body["occurred_at"]) - T
    topic = "SET" if record.topic == SET else "BAL"
    head = f"  {topic}[{record.partition}]@{record.offset} {body['customer_id']} {body['event_id']}"
    head += f" T{at.total_seconds():+.0f}s"
    if record.topic == SET:
        auto = "on" if body["auto_trigger"] else "off"
        return f"{head} auto={auto} threshold={body['limit_threshold']}"
    return f"{head} {body['balance']}"


THRESHOLDS = ("10.00", "50.00")
AMOUNTS = ("5.00", "30.00", "80.00")  # below both thresholds, between them, above both


@dataclass(frozen=True)
class _Rec:
    """One record of the batch to build."""

    customer: int  # (modulo the number of customers)
    settings: bool  # else a balance
    at: int  # seconds from T
    auto: bool
    threshold: str
    amount: str
    rank: int  # the event id's: same-instant ties ((occurred_at, event_id)) go either way
    poison: bool


_recs = st.builds(
    _Rec,
    customer=st.integers(0, 2),
    settings=st.booleans(),
    at=st.sampled_from((0, 0, 1, -1)),  # ties at T are likely
    auto=st.booleans(),
    threshold=st.sampled_from(THRESHOLDS),
    amount=st.sampled_from(AMOUNTS),
    rank=st.integers(0, 9),
    poison=st.sampled_from((False, False, False, True)),
)


@st.composite
def _cases(draw: st.DrawFn) -> _Case:
    """2-8 records of 1-3 customers (each on one partition number of both topics): settings
    (cheque / TT, auto-trigger on or off, one of two thresholds) and balances, dated T - 1 s, T
    or T + 1 s (same-instant ties are common), at least one of them poison; and for each
    customer, maybe settings and a balance applied before, at T - 1 min. With a and b in the
    batch, maybe b pays for a's top-ups (master_account) from 500.00 known before: a balance
    of b in the batch (at most 80.00) then decides whether a's top-up is funded, so the split
    must keep a's and b's records in one order (with the grouping by partner turned off, the
    property failed on one seed in five)."""
    n = draw(st.integers(1, 3), label="customers")
    recs = [
        replace(r, customer=r.customer % n) for r in draw(st.lists(_recs, min_size=2, max_size=8))
    ]
    poison = {i for i, r in enumerate(recs) if r.poison} | {draw(st.integers(0, len(recs) - 1))}
    customers = sorted({r.customer for r in recs})
    partition = {c: draw(st.integers(0, 1)) for c in customers}
    log = _Log()
    before = T - timedelta(minutes=1)
    prior: list[InputRecord] = []
    # b pays for a's top-ups (master_account) from its 500.00: enough for one 100.00 top-up,
    # unless a balance of b in the batch comes first (at most 80.00).
    partnered = {0, 1} <= set(customers) and draw(st.booleans(), label="b pays for a")
    for c in customers:
        name, p = "abc"[c], partition[c]
        auto = draw(st.sampled_from((None, True, True, False)))  # auto-trigger on, mostly
        if auto is not None or (partnered and c == 0):  # settings in effect
            threshold = draw(st.sampled_from(THRESHOLDS))
            partner = "b" if partnered and c == 0 else None
            prior.append(
                log.settings_of(
                    name, before, p, f"{name}-set", auto is not False, threshold, partner
                )
            )
        if partnered and c == 1:
            prior.append(log.balance_of(name, "500.00", before, p, f"{name}-bal"))
        elif draw(st.booleans()):  # a balance known
            prior.append(
                log.balance_of(name, draw(st.sampled_from(AMOUNTS)), before, p, f"{name}-bal")
            )
    batch: list[InputRecord] = []
    for i, r in enumerate(recs):
        name, p, at, event_id = (
            "abc"[r.customer],
            partition[r.customer],
            T + timedelta(seconds=r.at),
            f"e{r.rank}-{i}",
        )
        if r.settings:
            batch.append(log.settings_of(name, at, p, event_id, r.auto, r.threshold))
        else:
            batch.append(log.balance_of(name, r.amount, at, p, event_id))
    return _Case(prior, batch, frozenset(poison), waits=not partnered)


# --- the two runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Split:
    db: FakeDatabase
    handler: _FailsWith
    reports: list[BatchReport]


async def _split(case: _Case) -> _Split:
    """The batch through BatchProcessor, which fails and splits it. Held records are handed in
    again, as the consumer does (Pending.due), once their bound has run out, until none is."""
    clock = Monotonic()
    db, uow = fake_uow_factory()
    await BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS).handle(case.prior)
    poisons = {where(case.batch[i]) for i in case.poison}
    handler = _FailsWith(uow, _alignment(clock, BOUND if case.waits else 0), poisons)
    processor = BatchProcessor(handler, lambda exc: False)
    reports = [await processor.process(case.batch)]
    for _ in case.batch:  # (each round decides every held record again: one is enough)
        held = {(h.topic, h.partition, h.offset) for h in reports[-1].held}
        if not held:
            break
        assert not held & poisons, "a poison record reported held"
        clock.advance(BOUND)
        reports.append(await processor.process([r for r in case.batch if where(r) in held]))
    assert reports[-1].held == [], "records still held after their bound ran out"
    return _Split(db, handler, reports)


async def _reference(case: _Case) -> tuple[FakeDatabase, list[InputRecord]]:
    """The same prior state; then the batch's records but the poison, in the order the handler
    applies them without it (`apply_order` of the good records: the poison shapes nothing),
    one transaction each, without a tracker (nothing waits), nothing failing. Returns the
    database and that order."""
    db, uow = fake_uow_factory()
    handler = BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS)
    await handler.handle(case.prior)
    good = [r for i, r in enumerate(case.batch) if i not in case.poison]
    order = [good[i] for i in handler.apply_order(good)]
    for record in order:
        await handler.handle([record])
    return db, order


def _balances_after_their_settings(case: _Case, applied: list[InputRecord]) -> None:
    """No balance is applied before a settings record of its customer dated at or before it,
    unless a settings record of that customer ahead of that one in its partition is dated after
    the balance (each topic keeps its partition's order; a poison record does not count)."""
    handler = BatchHandler(fake_uow_factory()[1], lambda: NOW, rules.Policy(), TOPICS)
    events = [handler.decode(r) for r in case.batch]
    when = {where(r): n for n, r in enumerate(applied)}
    for i, balance in enumerate(events):
        if i in case.poison or not isinstance(balance, BalanceChanged):
            continue
        for j, s in enumerate(events):
            if j in case.poison:
                continue
            if not (isinstance(s, SettingsUpdated) and s.customer_id == balance.customer_id):
                continue
            if s.occurred_at > balance.occurred_at:
                break  # it and the customer's settings after it may go after the balance
            assert when[where(case.batch[j])] < when[where(case.batch[i])], (
                f"balance #{i} ({balance.occurred_at:%H:%M:%S}) applied before settings "
                f"#{j} ({s.occurred_at:%H:%M:%S}) of {balance.customer_id}"
            )


# The explain phase, which only annotates a failure, takes minutes on this test. 200 examples
# take 2-4 s; with the split in the batch's order (the bug fixed in 8350998) every one of 30
# seeds failed, about half of them with a top-up taken that the reference does not take.
_NO_EXPLAIN = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)


def _daily_keys(db: FakeDatabase) -> list[tuple[str, date, str, str]]:
    return sorted(
        (c.topup.customer_id, c.topup.business_date, str(c.topup.amount), c.topup.trigger_event_id)
        for c in db.committed.daily_keys
    )


@settings(max_examples=200, deadline=None, phases=_NO_EXPLAIN)
@given(case=_cases())
def test_a_split_batch_comes_to_what_its_good_records_come_to_in_event_time(case: _Case) -> None:
    """Whichever way BatchProcessor splits a failed batch to set its poison records aside:

    - every poison record is dead-lettered exactly once, and nothing else is;
    - every other record is applied exactly once, and each customer's in the order in which
      the handler applies the good records together (`apply_order`: event time, settings
      first at the same instant, each topic in its partition's order), so no balance is
      applied before a settings record of its customer dated at or before it (checked on the
      event times too);
    - the end state equals the reference's, which applies those records in that order, one
      transaction each, with nothing failing and nothing waiting: the daily keys taken
      (customer, business date, amount, triggering event), every wallet (settings, balance,
      usage), the decision summary, and the outbox but the poison's dead letters.

    So a poison record shapes nothing, though it was fetched: each topic keeps its partition's
    order (alignment.in_event_time), so where it stood would otherwise shape where the records
    around it go. Balances [poison @T+1, b @T-1] and an off-switch @T: the whole batch goes
    off-switch, poison, b (settings go before the first balance, in partition order, dated at
    or after them), so b is blocked; the good records alone go b, off-switch, and b tops up,
    as its customer's settings at T-1 say. test_a_poison_settings_record_orders_nothing below
    is a case where the split took a top-up (before the processor's `_one_customer`).

    Held records: the failed first attempt fetched the whole batch, so the other topic's
    partition is read up to every time in it, and a due record is held only when nothing of
    that partition in the batch is dated at or after it (so every settings record of its
    customer in the batch is dated before it and goes before it); its customer's later records
    wait behind it. As the consumer does (Pending.due), the held records are handed in again
    once their bound ran out, until none is held; the reference, which never waits, must come
    to the same state."""
    _check(case)


def _poison_ahead_of_two_switches() -> _Case:
    """Nothing before; settings [off @T+1 POISON, on @T, off @T] (the on-switch's event id
    first, so the off-switch is the later of the two) and balances [5.00 @T, 5.00 @T]."""
    log, at = _Log(), T
    batch = [
        log.settings_of("a", at + timedelta(seconds=1), 0, "e3", False, "10.00"),
        log.settings_of("a", at, 0, "e1", True, "10.00"),
        log.settings_of("a", at, 0, "e2", False, "10.00"),
        log.balance_of("a", "5.00", at, 0, "e4"),
        log.balance_of("a", "5.00", at, 0, "e5"),
    ]
    return _Case([], batch, frozenset({0}))


def test_a_poison_settings_record_orders_nothing() -> None:
    """Neither the batch without the failure (off @T+1 makes both settings @T stale) nor the
    good records alone (settings first at T: on, off, then the balances, blocked) take a
    top-up. With the poison in its place, the balances went first (the settings partition's
    head was dated T+1), the poison was set aside, and then the on-switch topped up the low
    balance before the off-switch came."""
    case = _poison_ahead_of_two_switches()
    split = asyncio.run(_split(case))
    assert _daily_keys(split.db) == []
    wallet = split.db.committed.wallets["a"]
    assert wallet.settings is not None
    assert not wallet.settings.auto_trigger
    _check(case)


def _check(case: _Case) -> None:
    split = asyncio.run(_split(case))
    reference, order = asyncio.run(_reference(case))
    poisons = [where(case.batch[i]) for i in sorted(case.poison)]

    got, want = split.db.committed, reference.committed
    days = _daily_keys(split.db), _daily_keys(reference)
    assert [d[:3] for d in days[0]] == [d[:3] for d in days[1]], "a top-up taken or missed"
    assert days[0] == days[1], "a top-up triggered by another event"
    assert got.wallets == want.wallets  # settings, balances, the month's spending, ...
    assert got.decisions == want.decisions
    extra = Counter(got.outbox) - Counter(want.outbox)
    assert Counter(want.outbox) - Counter(got.outbox) == Counter()
    assert sorted(r.topic for r in extra.elements()) == [TOPICS.dead_letter] * len(poisons)

    assert split.handler.dead == Counter(poisons), "each poison record dead-lettered once"
    dead = sum(
        r.counts[CountKey.dead_letter(DeadLetterReason.PROCESSING_ERROR)] for r in split.reports
    )
    assert dead == len(poisons)
    # Each good record applied once, each customer's in the order of the whole batch.
    assert sorted(map(where, split.handler.applied)) == sorted(map(where, order))
    for customer in {r.key for r in case.batch}:
        assert [r for r in split.handler.applied if r.key == customer] == [
            r for r in order if r.key == customer
        ], "a customer's records applied out of order"
    _balances_after_their_settings(case, split.handler.applied)
