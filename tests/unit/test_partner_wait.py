"""A partner's wallet and the wait for the other input topic (contract v2, ADR 0004).

A due top-up that a partner pays reads the partner's balance. While a record waits for the
other topic, the records around it must not be applied out of event time across that link:

- a due top-up paid by b waits behind a record of b that waits and is not later than it (else
  a is credited from b's balance as it was before that record);
- b's records later than a waiting top-up of a that b pays wait behind it (else a is decided
  later against b's balance after them).

The records are driven as the consumer drives them (`Pending`: held records handed in again
when they may be decided differently, the clock moved to each retry), and the end state is
compared with the same records applied without any wait.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from service.domain import rules
from service.entrypoints.held_records import Pending
from service.service_layer.alignment import Alignment
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.fakes import FakeDatabase, fake_uow_factory
from tests.unit.test_alignment import BAL, BOUND, SET, TOPICS, Monotonic, T, _alignment

BEFORE = T - timedelta(minutes=1)


class _Log:
    """Records with increasing offsets per partition, as a broker numbers them."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._ids = 0

    def _n(self) -> int:
        self._ids += 1
        return self._ids

    def record(self, topic: str, partition: int, key: str, body: dict[str, Any]) -> InputRecord:
        offset = self._next.get((topic, partition), 0)
        self._next[(topic, partition)] = offset + 1
        return InputRecord(topic, partition, offset, key.encode(), dumps(body))

    def balance(self, customer: str, amount: str, at: datetime, partition: int) -> InputRecord:
        body = balance_wire(customer, amount, at=at, event_id=f"{customer}-{amount}-{self._n()}")
        return self.record(BAL, partition, customer, body)

    def settings(
        self, customer: str, at: datetime, partition: int, *, auto: bool = True, **paid: Any
    ) -> InputRecord:
        body = settings_wire(
            customer, auto=auto, at=at, event_id=f"{customer}-set-{self._n()}", **paid
        )
        return self.record(SET, partition, customer, body)


def _prior(log: _Log, pa: int, pb: int, *, b_auto: bool) -> list[InputRecord]:
    """a is paid by b (master_account, 100.00 when below 10.00); b has 500.00."""
    return [
        log.settings("a", BEFORE, pa, method="master_account", partner_id="b"),
        log.settings("b", BEFORE, pb, auto=b_auto),
        log.balance("b", "500.00", BEFORE, pb),
        log.balance("a", "200.00", BEFORE, pa),
    ]


class _Consumer:
    """The consumer's loop (consumer.py): held records go in again ahead of a batch, or alone
    when a retry is due; the clock is moved to each retry."""

    def __init__(self, db: FakeDatabase, handler: BatchHandler, clock: Monotonic) -> None:
        self.db, self.handler, self.clock = db, handler, clock
        self.pending = Pending(clock, aligned=(BAL, SET))
        self.transactions = 0

    async def fetch(self, batch: Sequence[InputRecord]) -> None:
        given = self.pending.due(batch) + list(batch)
        self.pending.fetched(batch)
        await self._apply(given)

    async def _apply(self, given: list[InputRecord]) -> None:
        report = await self.handler.handle(given)
        self.pending.settle(given, report.held)
        self.transactions += 1

    async def drain(self, most: int = 20) -> None:
        """Until nothing is held; at most `most` retries (a retry loop that never settles, or
        one that decides the same records again and again, fails here)."""
        for _ in range(most):
            if not self.pending:
                return
            assert self.pending.retry_in is not None
            self.clock.advance(self.pending.retry_in)
            due = self.pending.due()
            if due:
                await self._apply(due)
            else:
                self.pending.recount()
        raise AssertionError(f"still held after {most} retries: {self.pending.records()}")


def _consumer(bound: float = BOUND) -> _Consumer:
    clock = Monotonic()
    db, uow = fake_uow_factory()
    align: Alignment = _alignment(clock, bound)
    handler = BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS, alignment=align)
    return _Consumer(db, handler, clock)


def _outcomes(db: FakeDatabase, customer: str) -> list[tuple[str, str]]:
    """(topic, reason or funding source) of what was published for `customer`: decisions."""
    out = []
    for r in db.committed.outbox:
        if r.topic in (TOPICS.dead_letter, TOPICS.auto_topup_notice):
            continue
        body = json.loads(r.value or b"{}")
        if body.get("customer_id") == customer:
            out.append((r.topic, str(body.get("reason") or body.get("funding_source"))))
    return out


async def test_a_top_up_waits_behind_its_partner_s_earlier_record_that_waits() -> None:
    """b's own auto-trigger is on: its drop to 5.00 @T is due for b itself and waits (nothing
    of b's settings partition is read up to T). a's 5.00 @T is due, paid by b, and a's
    settings partition is read past T. In event time b has 5.00 when a is decided: a's
    top-up fails (partner_insufficient_funds). Before the fix a went on while b's record
    waited, and was credited from b's 500.00."""
    log, run = _Log(), _consumer()
    await run.fetch(_prior(log, 0, 1, b_auto=True))
    drop = log.balance("b", "5.00", T, 1)
    read_past = log.settings("c", T + timedelta(seconds=1), 0)
    due = log.balance("a", "5.00", T, 0)
    await run.fetch([drop, read_past, due])
    assert {(r.topic, r.partition, r.offset) for r in run.pending.records()} == {
        (BAL, 1, drop.offset),
        (BAL, 0, due.offset),
    }, "a's due record waits behind b's"
    await run.drain()
    assert _outcomes(run.db, "a") == [(TOPICS.top_up_failed, "partner_insufficient_funds")]


async def test_a_partner_s_later_record_waits_behind_the_top_up_it_pays_for() -> None:
    """The mirror: a's 5.00 @T is due, paid by b, and waits (a's settings partition is not
    read up to T). b's drop to 50.00 @T+1 s is not due for b (auto-trigger off). In event time
    a is decided with b at 500.00: credited. Before the fix b's drop went on at once and a was
    decided later against 50.00."""
    log, run = _Log(), _consumer()
    await run.fetch(_prior(log, 0, 1, b_auto=False))
    due = log.balance("a", "5.00", T, 0)
    drop = log.balance("b", "50.00", T + timedelta(seconds=1), 1)
    read_past = log.settings("c", T + timedelta(seconds=2), 1)  # b's own partition: read
    await run.fetch([due, drop, read_past])
    held = {(r.topic, r.partition, r.offset) for r in run.pending.records()}
    assert (BAL, 1, drop.offset) in held, "b's later drop waits behind a's top-up"
    # b's drop is not decided again while a's record waits: one retry, when a's bound runs out
    before = run.transactions
    await run.drain()
    assert run.transactions - before <= 2
    assert _outcomes(run.db, "a") == [(TOPICS.credit_issued, "master_account")]


# --- the property ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rec:
    customer: str  # "a" (paid by b), "b" (the partner) or "c" (another customer)
    settings: bool  # else a balance
    at: int  # seconds from T
    auto: bool
    amount: str


_recs = st.builds(
    _Rec,
    customer=st.sampled_from("aabbc"),
    settings=st.sampled_from((False, False, True)),
    at=st.integers(-1, 2),
    auto=st.booleans(),
    amount=st.sampled_from(("5.00", "50.00", "150.00")),
)


@dataclass(frozen=True)
class _Case:
    prior: list[InputRecord]
    fetches: list[list[InputRecord]]  # in event time across partitions, cut into fetches

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis prints this
        printer.text(repr(self))

    def __repr__(self) -> str:
        return "\n".join(
            [f"prior: {len(self.prior)} records"]
            + [f"fetch {n}: " + ", ".join(map(_shown, f)) for n, f in enumerate(self.fetches)]
        )


def _shown(record: InputRecord) -> str:
    body = json.loads(record.value or b"{}")
    at = (datetime.fromisoformat(body["occurred_at"]) - T).total_seconds()
    what = f"auto={body['auto_trigger']}" if record.topic == SET else body["balance"]
    where = f"{record.topic[:3]}[{record.partition}]@{record.offset}"
    return f"{where} {body['customer_id']} T{at:+.0f}s {what}"


@st.composite
def _cases(draw: st.DrawFn) -> _Case:
    """a (paid by b), b (500.00 known, its own auto-trigger on or off) and c, each on a
    partition number of both topics; 1-8 records dated T-1 s .. T+2 s, fetched in event time
    across partitions (at the same instant the partner's records first: a record dated T
    tells the state at T, so a top-up dated T sees the partner's balance of T; then a
    customer's settings before its balances), in 1-3 fetches."""
    part = {c: draw(st.integers(0, 1)) for c in "abc"}
    log = _Log()
    prior = _prior(log, part["a"], part["b"], b_auto=draw(st.booleans()))
    recs = sorted(
        draw(st.lists(_recs, min_size=1, max_size=8)),
        key=lambda r: (r.at, r.customer != "b", not r.settings),
    )
    batch = []
    for r in recs:
        at = T + timedelta(seconds=r.at)
        if r.settings:
            paid = {"method": "master_account", "partner_id": "b"} if r.customer == "a" else {}
            batch.append(log.settings(r.customer, at, part[r.customer], auto=r.auto, **paid))
        else:
            batch.append(log.balance(r.customer, r.amount, at, part[r.customer]))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(batch) - 1)), max_size=2)))
    bounds = [0, *cuts, len(batch)]
    fetches = [batch[i:j] for i, j in itertools.pairwise(bounds) if batch[i:j]]
    return _Case(prior, fetches)


def _state(db: FakeDatabase) -> tuple[object, ...]:
    keys = sorted(
        (c.topup.customer_id, str(c.topup.amount), c.topup.trigger_event_id, c.result or "")
        for c in db.committed.daily_keys
    )
    published = sorted((r.topic, r.key or b"", r.value or b"") for r in db.committed.outbox)
    return keys, published, sorted(db.committed.wallets.items())


async def _run(case: _Case, bound: float) -> tuple[object, ...]:
    run = _consumer(bound)
    await run.fetch(case.prior)
    await run.drain()
    for fetch in case.fetches:
        run.clock.advance(0.1)  # each fetch within the bound of the one before
        await run.fetch(fetch)
    await run.drain()
    return _state(run.db)


_NO_EXPLAIN = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)


@settings(max_examples=300, deadline=None, phases=_NO_EXPLAIN)
@given(case=_cases())
def test_waiting_only_delays_what_records_fetched_in_event_time_come_to(case: _Case) -> None:
    """Records fetched in event time across partitions (a backlog, a replay) come to the same
    end state with the wait as without it: daily keys (amount, triggering event, result),
    everything published, every wallet. The wait only lets a late settings record go first;
    when none comes, holding a due record (and what waits behind it) must change nothing, also
    where b's balance decides whether a's top-up is funded."""
    assert asyncio.run(_run(case, BOUND)) == asyncio.run(_run(case, 0))


async def test_a_trial_leaves_no_partner_waiting_behind_its_records() -> None:
    """A trial (rolled back, ADR 0011) of a's due record that waits notes that b's later
    records wait behind it; the rollback takes that back too, though b is not in the trial."""
    log, run = _Log(), _consumer()
    await run.fetch(_prior(log, 0, 1, b_auto=False))
    align = run.handler._alignment
    assert align is not None
    report = await run.handler.handle([log.balance("a", "5.00", T, 0)], trial=True)
    assert report.held, "a's due record waits in the trial"
    assert align.waiting() == {}
    drop = log.balance("b", "50.00", T + timedelta(seconds=1), 1)
    assert (await run.handler.handle([drop])).held == []


def test_a_partner_waits_behind_each_waiting_top_up_it_pays_until_the_last_is_decided() -> None:
    """b pays for a1 and a2, whose due records both wait; b's later record waits behind the
    earlier one, and once that one is decided, still behind the other."""
    clock = Monotonic()
    align = _alignment(clock)
    at = T + timedelta(seconds=2)
    assert align.hold(BAL, 0, 1, "a1", T, "b") > 0
    clock.advance(0.3)
    assert align.hold(BAL, 0, 2, "a2", T + timedelta(seconds=1), "b") > 0
    later = InputRecord(BAL, 1, 7, b"b", b"")
    held = align.held_back(later, "b", at)
    assert held is not None
    assert held.after == "a1"
    clock.advance(0.3)  # a1's bound runs out, not a2's
    assert align.admit(BAL, 0, 1, "a1", T)
    assert align.hold(BAL, 0, 1, "a1", T, "b") == 0
    held = align.held_back(later, "b", at)
    assert held is not None
    assert held.after == "a2"
    assert align.held_back(InputRecord(BAL, 1, 6, b"b", b""), "b", T) is None  # not later


async def test_a_partner_record_held_behind_a_later_placed_top_up_is_not_overtaken() -> None:
    """Found by the property. a's on-switch @T makes a's top-up due and waits; it comes again
    with the next fetch, whose order puts b's 5.00 @T before it (the order is event time
    within a customer only), so b's 5.00 waits behind it. The on-switch is then decided in the
    same batch; b's 50.00 @T+1 s, next in b's partition, must still wait behind b's 5.00, or
    b's 5.00 comes after it and is stale (b's day would not show its low of 5.00)."""
    log, run = _Log(), _consumer()
    ref = _consumer(0)
    prior = _prior(log, 0, 0, b_auto=False)
    paid: dict[str, Any] = {"method": "master_account", "partner_id": "b"}
    fetches = [
        [
            log.settings("a", T - timedelta(seconds=1), 0, auto=False, **paid),
            log.balance("a", "5.00", T - timedelta(seconds=1), 0),
            log.settings("a", T, 0, **paid),
        ],
        [
            log.balance("b", "5.00", T, 0),
            log.balance("a", "5.00", T, 0),
            log.balance("b", "50.00", T + timedelta(seconds=1), 0),
        ],
    ]
    for consumer in (run, ref):
        await consumer.fetch(prior)
        for fetch in fetches:
            consumer.clock.advance(0.1)
            await consumer.fetch(fetch)
        await consumer.drain()
    assert _state(run.db) == _state(ref.db)
    usage = run.db.committed.wallets["b"].usage
    assert usage is not None
    assert [d.low for d in usage.days] == [Decimal("5.00")]


async def test_a_top_up_and_its_partner_s_record_whose_bounds_run_out_together() -> None:
    """a's 5.00 @T (paid by b) and b's drop to 5.00 @T (due for b itself) both wait for their
    own settings partitions, from the same fetch, a's first. Their bounds run out together and
    they come again in that order: a must still wait for b's drop (the partner's record of the
    same instant goes first), then fail (partner_insufficient_funds)."""
    log, run = _Log(), _consumer()
    await run.fetch(_prior(log, 0, 1, b_auto=True))
    run.clock.advance(0.1)
    await run.fetch([log.balance("a", "5.00", T, 0), log.balance("b", "5.00", T, 1)])
    assert len(run.pending.records()) == 2, "both wait for their settings partitions"
    await run.drain()
    assert _outcomes(run.db, "a") == [(TOPICS.top_up_failed, "partner_insufficient_funds")]
