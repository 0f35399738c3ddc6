"""Event-time order of one customer's settings and balances, and the wait for the other topic
(contract v2), on the in-memory unit of work with an injected monotonic clock: no sleeps."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from service.config import Topics
from service.contract.codec import Invalid
from service.domain import rules
from service.domain.model import SettingsUpdated
from service.domain.reasons import DeadLetterReason
from service.service_layer.alignment import Alignment, Held
from service.service_layer.event_order import Decoded, in_event_time
from service.service_layer.handlers import BatchHandler, BatchReport, Event, _Batch
from service.service_layer.ports import BatchStore, CountKey, InputRecord, UnitOfWorkFactory
from service.service_layer.processor import BatchProcessor
from tests.factories import NOW, balance, balance_wire, dumps, settings, settings_wire
from tests.fakes import FakeDatabase, FakeUnitOfWork, fake_uow_factory

TOPICS = Topics()
BAL = TOPICS.wallet_balance_changed
SET = TOPICS.settings_updated
T = NOW - timedelta(hours=1)  # the same business day as NOW, whatever the timezone below
BOUND = 0.5


class Monotonic:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Log:
    """Input records with increasing offsets per partition, as a broker would number them."""

    def __init__(self) -> None:
        self._next: Counter[tuple[str, int]] = Counter()

    def _record(self, topic: str, partition: int, key: str, value: bytes) -> InputRecord:
        offset = self._next[(topic, partition)]
        self._next[(topic, partition)] += 1
        return InputRecord(topic, partition, offset, key.encode(), value)

    def balance(self, customer: str, amount: str, at: datetime, partition: int = 0) -> InputRecord:
        body = balance_wire(customer, amount, at=at)
        return self._record(BAL, partition, customer, dumps(body))

    def settings(
        self, customer: str, at: datetime, *, auto: bool = True, partition: int = 0
    ) -> InputRecord:
        body = settings_wire(customer, trigger="100.00", threshold="10.00", auto=auto, at=at)
        return self._record(SET, partition, customer, dumps(body))

    def garbage(self, topic: str, key: str, partition: int = 0) -> InputRecord:
        return self._record(topic, partition, key, b"{not json")


def _handler(alignment: Alignment | None = None) -> tuple[FakeDatabase, BatchHandler]:
    db, uow = fake_uow_factory()
    return db, BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS, alignment=alignment)


def _alignment(clock: Monotonic, bound: float = BOUND) -> Alignment:
    return Alignment(BAL, SET, bound, clock)


def _days(db: FakeDatabase) -> list[tuple[str, str]]:
    return [(c.topup.customer_id, c.topup.trigger_event_id) for c in db.committed.daily_keys]


def _decisions(db: FakeDatabase, customer: str) -> set[tuple[str, str]]:
    return {(o, r) for (c, o, r) in db.committed.decisions if c == customer}


def _where(report: BatchReport) -> list[tuple[str, int, int, bool]]:
    return [(h.topic, h.partition, h.offset, h.retry_in > 0) for h in report.held]


def _event_id(record: InputRecord) -> str:
    assert record.value is not None
    return str(json.loads(record.value)["event_id"])


# --- the order of one batch ----------------------------------------------------------------------


def _pairs(*events: object) -> list[Decoded]:
    out: list[Decoded] = []
    for n, event in enumerate(events):
        topic = SET if isinstance(event, SettingsUpdated) else BAL
        out.append((InputRecord(topic, 0, n, None, b""), event))  # type: ignore[arg-type]
    return out


def test_a_batch_without_settings_keeps_its_order_and_is_not_copied() -> None:
    batch = _pairs(balance("a", at=T + timedelta(seconds=5)), balance("a", at=T))
    assert in_event_time(batch, SET) is batch


def test_settings_go_among_their_customers_balances_by_time_settings_first() -> None:
    late = balance("a", at=T + timedelta(seconds=2))
    same = balance("a", at=T)
    early = balance("a", at=T - timedelta(seconds=2))
    off = settings("a", at=T, auto=False)
    other = balance("b", at=T - timedelta(hours=1))
    bad = Invalid("invalid_json", "")
    batch = _pairs(late, other, bad, early, off, same)
    ordered = [e for _, e in in_event_time(batch, SET)]
    # 'a': the off-switch goes before the balances from T on. Its balances keep the order of
    # their partition (late came first: still first; it makes `early` stale, as before v2).
    # a's records take the places a's records had; b's and the unreadable one keep theirs.
    assert ordered == [off, other, bad, late, early, same]


def test_settings_after_every_balance_of_their_customer_come_after_them_in_its_places() -> None:
    first = balance("a", at=T)
    later = settings("a", at=T + timedelta(seconds=1))
    other = settings("b", at=T - timedelta(days=1))
    ordered = [e for _, e in in_event_time(_pairs(later, other, first), SET)]
    assert ordered == [first, other, later]


def test_a_batch_in_event_time_across_customers_stays_so() -> None:
    """a's settings dated after its last balance stay before b's later balance (a top-up that
    b pays, made due by those settings, must not see b's balance of later)."""
    a_low = balance("a", at=T)
    a_on = settings("a", at=T + timedelta(seconds=1))
    b_later = balance("b", at=T + timedelta(seconds=2))
    ordered = [e for _, e in in_event_time(_pairs(a_low, a_on, b_later), SET)]
    assert ordered == [a_low, a_on, b_later]


# --- the tracker -------------------------------------------------------------------------------


def test_a_due_record_waits_until_the_other_partition_is_read_up_to_its_time() -> None:
    clock = Monotonic()
    align = _alignment(clock)
    at = T + timedelta(seconds=2)
    assert align.hold(BAL, 0, 7, "a", at) == BOUND  # it waits, at most the bound
    # Read from another partition, or up to an earlier time: still waiting.
    align.fetched(_pairs(settings("x", at=at + timedelta(seconds=9))), NOW, NOW)  # SET[0]
    align.assign(None)
    align.fetched([(InputRecord(SET, 1, 0, None, b""), settings("x", at=at))], NOW, NOW)
    align.fetched([(InputRecord(SET, 0, 0, None, b""), settings("x", at=T))], NOW, NOW)
    assert align.hold(BAL, 0, 7, "a", at) > 0
    align.fetched([(InputRecord(SET, 0, 1, None, b""), settings("y", at=at))], NOW, NOW)
    assert align.read_up_to(SET, 0) == at
    assert align.hold(BAL, 0, 7, "a", at) == 0


def test_the_wait_is_bounded_from_the_first_fetch() -> None:
    clock = Monotonic()
    align = _alignment(clock)
    at = T + timedelta(seconds=2)
    assert align.hold(BAL, 0, 7, "a", at) == BOUND
    until = align.until(BAL, 0, 7)  # when the bound runs out, on the same clock
    assert until == clock() + BOUND
    clock.advance(BOUND - 0.02)
    assert abs(align.hold(BAL, 0, 7, "a", at) - 0.02) < 1e-9  # what is left of the bound
    assert align.until(BAL, 0, 7) == until  # counted from the first fetch, whenever asked
    clock.advance(0.02)
    assert align.hold(BAL, 0, 7, "a", at) == 0


def test_no_wait_without_a_bound_or_without_the_other_partition() -> None:
    clock = Monotonic()
    at = T + timedelta(seconds=2)
    assert _alignment(clock, bound=0).hold(BAL, 0, 1, "a", at) == 0
    align = _alignment(clock)
    align.assign([(BAL, 0), (SET, 1)])  # not co-partitioned here: nothing to wait for
    assert align.hold(BAL, 0, 1, "a", at) == 0
    align.assign([(BAL, 0), (SET, 0)])
    assert align.hold(BAL, 0, 1, "a", at) > 0


def test_records_dated_beyond_the_skew_do_not_count_as_read() -> None:
    align = _alignment(Monotonic())
    ahead = NOW + timedelta(hours=1)
    align.fetched([(InputRecord(SET, 0, 0, None, b""), settings("x", at=ahead))], NOW, NOW)
    assert align.read_up_to(SET, 0) is None


def test_a_record_dated_ahead_shows_the_partition_read_up_to_when_it_was_fetched_only() -> None:
    """Another customer's settings dated 4 minutes ahead (within the skew) are fetched first;
    a due balance dated after that fetch must still wait for its own customer's records."""
    align = _alignment(Monotonic())
    fetched_at = T
    ahead = T + timedelta(minutes=4)
    horizon = T + timedelta(minutes=5)
    align.fetched(
        [(InputRecord(SET, 0, 0, None, b""), settings("x", at=ahead))], horizon, fetched_at
    )
    assert align.read_up_to(SET, 0) == fetched_at
    assert align.hold(BAL, 0, 7, "a", T + timedelta(seconds=2)) > 0


def test_later_records_of_a_waiting_customer_wait_behind_it() -> None:
    clock = Monotonic()
    align = _alignment(clock)
    at = T + timedelta(seconds=2)
    assert align.hold(BAL, 0, 7, "a", at) > 0
    assert align.admit(BAL, 0, 5, "a", T)  # before it in its partition (already applied)
    assert align.admit(SET, 0, 3, "a", at)  # settings of the same instant go before it
    assert not align.admit(SET, 0, 4, "a", at + timedelta(microseconds=1))
    assert align.admit(BAL, 0, 9, "b", at)  # other customers go on
    assert align.waiting() == {"a": (BAL, 0, 7)}
    assert not align.admit(BAL, 0, 8, "a", T)  # after it in its partition, whatever its time
    # Every held record holds back what follows it in its partition (settings 5 waits behind
    # settings 4); across partitions a record is compared with the other partition's first
    # held record (as Kafka Streams compares partition heads).
    assert not align.admit(SET, 0, 5, "a", at)
    assert align.waiting() == {"a": (BAL, 0, 8)}  # the earliest held record
    assert align.admit(BAL, 0, 7, "a", at)  # the waiting record itself: decided again
    assert align.admit(BAL, 0, 8, "a", T)  # and those behind it, in their partition's order
    assert align.admit(SET, 0, 4, "a", at + timedelta(microseconds=1))
    assert align.admit(SET, 0, 5, "a", at)
    assert align.waiting() == {}
    align.assign(None)
    assert align.admit(BAL, 0, 8, "a", T)


def test_a_record_first_fetched_behind_another_waits_from_its_own_first_fetch() -> None:
    clock = Monotonic()
    align = _alignment(clock)
    at = T + timedelta(seconds=2)
    align.hold(BAL, 0, 7, "a", at)
    assert not align.admit(BAL, 0, 8, "a", at)  # first fetched now
    clock.advance(BOUND)  # 7 no longer waits
    assert align.hold(BAL, 0, 7, "a", at) == 0
    align.settled(BAL, 0, 7)
    assert align.admit(BAL, 0, 8, "a", at)
    assert align.hold(BAL, 0, 8, "a", at) == 0  # its bound ran since it was first fetched


# --- the handler: order ----------------------------------------------------------------------


async def test_an_off_switch_dated_before_a_due_balance_wins_whatever_came_first() -> None:
    log = Log()
    db, handler = _handler()  # no tracker: ordered, never held
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    off = log.settings("a", T, auto=False)
    report = await handler.handle([due, off])  # the balance reached the broker first
    assert report.held == []
    assert _days(db) == []
    assert _decisions(db, "a") == {("blocked", "auto_trigger_off")}


async def test_without_an_off_switch_the_same_balance_tops_up() -> None:
    log = Log()
    db, handler = _handler()
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    off_later = log.settings("a", T + timedelta(seconds=5), auto=False)  # after the balance
    await handler.handle([off_later, due])
    assert _days(db) == [("a", _event_id(due))]


async def test_settings_go_first_at_the_same_instant() -> None:
    log = Log()
    db, handler = _handler()
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    await handler.handle([log.balance("a", "5.00", T), log.settings("a", T, auto=False)])
    assert _days(db) == []


# --- the handler: waiting ----------------------------------------------------------------------


async def test_a_due_balance_waits_for_a_late_off_switch_within_the_bound() -> None:
    clock = Monotonic()
    log = Log()
    db, handler = _handler(_alignment(clock))
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])

    due = log.balance("a", "5.00", T + timedelta(seconds=2))  # BAL[0]@0
    other = log.balance("b", "5.00", T + timedelta(seconds=3))  # BAL[0]@1, no settings
    after = log.balance("a", "4.00", T + timedelta(seconds=4))  # BAL[0]@2
    report = await handler.handle([due, other, after])
    assert _where(report) == [(BAL, 0, 0, True), (BAL, 0, 2, False)]
    assert report.held[0] == Held(BAL, 0, 0, "a", BOUND)
    assert _days(db) == []
    assert db.committed.wallets["a"].balance is None  # nothing of 'a' was applied
    assert db.committed.wallets["b"].balance is not None  # other customers went on

    clock.advance(0.2)  # the off-switch comes, dated before the balance: applied at once
    report = await handler.handle([log.settings("a", T, auto=False)])
    assert report.held == []
    # Handed in again (without BAL[0]@1, which was applied): no longer due.
    report = await handler.handle([due, after])
    assert report.held == []
    assert _days(db) == []
    assert _decisions(db, "a") == {("blocked", "auto_trigger_off")}
    assert db.committed.wallets["a"].balance is not None


async def test_a_due_balance_is_topped_up_when_the_bound_runs_out() -> None:
    clock = Monotonic()
    log = Log()
    db, handler = _handler(_alignment(clock))
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    assert _where(await handler.handle([due])) == [(BAL, 0, 0, True)]
    clock.advance(BOUND - 0.01)
    report = await handler.handle([due])
    assert len(report.held) == 1
    assert abs(report.held[0].retry_in - 0.01) < 1e-9
    clock.advance(0.01)
    assert (await handler.handle([due])).held == []
    assert _days(db) == [("a", _event_id(due))]


async def test_a_due_balance_goes_at_once_when_the_settings_partition_is_read_past_it() -> None:
    clock = Monotonic()
    log = Log()
    db, handler = _handler(_alignment(clock))
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    elsewhere = log.settings("z", T + timedelta(seconds=9), partition=1)  # another partition
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    assert len((await handler.handle([elsewhere, due])).held) == 1
    later = log.settings("y", T + timedelta(seconds=2))  # SET[0], another customer, same time
    assert (await handler.handle([later, due])).held == []
    assert _days(db) == [("a", _event_id(due))]


async def test_settings_that_make_a_top_up_due_wait_for_the_balances() -> None:
    clock = Monotonic()
    log = Log()
    db, handler = _handler(_alignment(clock))
    await handler.handle([log.balance("a", "5.00", T - timedelta(minutes=1))])  # no settings
    on = log.settings("a", T)
    assert _where(await handler.handle([on])) == [(SET, 0, 0, True)]
    assert db.committed.wallets["a"].settings is None
    report = await handler.handle([log.balance("b", "50.00", T + timedelta(seconds=1)), on])
    assert report.held == []
    assert _days(db) == [("a", _event_id(on))]


async def test_a_waiting_customer_s_later_settings_wait_across_batches() -> None:
    clock = Monotonic()
    log = Log()
    align = _alignment(clock)
    db, handler = _handler(align)
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    await handler.handle([due])  # waits (the consumer keeps it)

    earlier = log.settings("a", T + timedelta(seconds=1), auto=False)  # SET[0]@1
    later = log.settings("a", T + timedelta(seconds=3))  # SET[0]@2
    report = await handler.handle([earlier, later])
    assert _where(report) == [(SET, 0, 2, False)]  # `earlier` applied, `later` waits behind
    assert db.committed.wallets["a"].settings is not None
    assert not db.committed.wallets["a"].settings.auto_trigger
    assert align.read_up_to(SET, 0) == T + timedelta(seconds=3)  # the balance can go now

    clock.advance(0.1)
    report = await handler.handle([due, later])  # both handed in again: event-time order
    assert _decisions(db, "a") == {("blocked", "auto_trigger_off")}  # `due` went first
    # `later` turns auto-trigger on while the balance is low: due, it waits for the balances
    # (read up to T+2 only), from when it was first fetched.
    assert _where(report) == [(SET, 0, 2, True)]
    clock.advance(BOUND - 0.1)
    assert (await handler.handle([later])).held == []
    assert _days(db) == [("a", _event_id(later))]


async def test_an_unreadable_record_of_a_waiting_customer_waits_behind_it() -> None:
    """Keyed by the customer (as the contract wants), an unreadable record after a waiting
    one waits too, so its dead letter never overtakes the decision before it; a future-dated
    record is dead-lettered at once (it can never be applied, nothing to order)."""
    clock = Monotonic()
    log = Log()
    _, handler = _handler(_alignment(clock))
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    bad = log.garbage(BAL, "a")
    ahead = log.balance("a", "1.00", NOW + timedelta(hours=1))
    report = await handler.handle([due, bad, ahead])
    assert _where(report) == [(BAL, 0, 0, True), (BAL, 0, 1, False)]
    assert report.counts[CountKey.dead_letter("invalid_json")] == 0
    assert report.counts[CountKey.dead_letter("future_dated")] == 1
    clock.advance(1.0)  # the bound runs out: the due balance is decided, then the bad one
    again = await handler.handle([due, bad])
    assert again.held == []
    assert again.counts[CountKey.dead_letter("invalid_json")] == 1
    assert again.counts[CountKey.decision("triggered")] == 1


async def test_a_handler_without_a_tracker_never_holds() -> None:
    log = Log()
    db, handler = _handler()
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    assert (await handler.handle([due])).held == []
    assert len(db.committed.daily_keys) == 1


async def test_records_applied_past_a_held_one_change_nothing_when_they_come_again() -> None:
    """The consumer commits only up to the first held record: after a restart or a rebalance,
    what was applied after it in its partition is delivered again."""
    clock = Monotonic()
    log = Log()
    db, handler = _handler(_alignment(clock))
    await handler.handle(
        [log.settings("a", T - timedelta(minutes=1)), log.settings("b", T - timedelta(minutes=1))]
    )
    due = log.balance("a", "5.00", T + timedelta(seconds=2))  # BAL[0]@0: waits
    topped_up = log.balance("b", "5.00", T + timedelta(seconds=1))  # BAL[0]@1: read up to it
    bad = log.garbage(BAL, "c")  # BAL[0]@2
    read = log.settings("z", T + timedelta(seconds=1))  # SET[0]@2
    report = await handler.handle([due, topped_up, bad, read])
    assert _where(report) == [(BAL, 0, 0, True)]
    assert _days(db) == [("b", _event_id(topped_up))]
    before = db.snapshot()
    again = await handler.handle([topped_up, bad])
    after = db.snapshot()
    assert after.wallets == before.wallets
    assert after.daily_keys == before.daily_keys
    assert after.outbox == before.outbox  # a dead letter's dedupe key is its offset
    assert again.counts[CountKey.consumed(BAL, "stale")] == 1
    assert not any(e.outcome in ("triggered", "failed") for e in again.log)


async def test_a_waiting_record_set_aside_as_poison_holds_nothing_back() -> None:
    clock = Monotonic()
    log = Log()
    db, handler = _handler(_alignment(clock))
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    assert len((await handler.handle([due])).held) == 1
    await handler.dead_letter_only(due, Invalid("processing_error", "a bug"))
    later = log.balance("a", "50.00", T + timedelta(seconds=3))
    assert (await handler.handle([later])).held == []
    assert db.committed.wallets["a"].balance is not None


async def test_records_applied_one_by_one_after_a_failed_batch_still_wait() -> None:
    clock = Monotonic()
    log = Log()
    db = FakeDatabase()
    failures: list[Exception] = []

    def flaky() -> FakeUnitOfWork:
        unit = db.unit_of_work()
        if failures:
            error = failures.pop()

            async def commit() -> None:
                raise error

            unit.commit = commit  # type: ignore[method-assign]
        return unit

    handler = BatchHandler(flaky, lambda: NOW, rules.Policy(), TOPICS, alignment=_alignment(clock))
    processor = BatchProcessor(handler, lambda exc: False)
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    other = log.balance("b", "50.00", T + timedelta(seconds=3))
    failures.append(RuntimeError("a bug in the batch path"))
    report = await processor.process([due, other])  # fails whole, then record by record
    assert report.held == [Held(BAL, 0, 0, "a", BOUND)]
    assert db.committed.wallets["b"].balance is not None
    assert _days(db) == []


At = tuple[str, int, int]  # (topic, partition, offset)


def where(record: InputRecord) -> At:
    return (record.topic, record.partition, record.offset)


class _FailsWith(BatchHandler):
    """A handler with a bug that a record sets off (any of `poisons`), in `_read`: after the
    batch was fetched (the other topic's marks raised) and before anything is applied, so every
    record it notes as applied (decided and written, not held; not in a trial, which is rolled
    back), in order, was committed. It counts the records it dead-lettered too."""

    def __init__(self, uow: UnitOfWorkFactory, alignment: Alignment, poisons: set[At]) -> None:
        super().__init__(uow, lambda: NOW, rules.Policy(), TOPICS, alignment=alignment)
        self.poisons = poisons
        self.applied: list[InputRecord] = []
        self._applying: list[InputRecord] = []
        self.dead: Counter[At] = Counter()

    async def _read(
        self,
        store: BatchStore,
        decoded: Sequence[tuple[InputRecord, Event | Invalid]],
        ids: set[str],
        since: date,
        now: datetime,
    ) -> _Batch:
        if any(where(r) in self.poisons for r, _ in decoded):
            raise RuntimeError("a bug this record sets off")
        return await super()._read(store, decoded, ids, since, now)

    async def handle(self, records: Sequence[InputRecord], *, trial: bool = False) -> BatchReport:
        self._applying = []
        report = await super().handle(records, trial=trial)
        if not trial:  # (a trial is rolled back)
            self.applied += self._applying
        return report

    def _apply(self, batch: _Batch, record: InputRecord, event: Event | Invalid) -> None:
        held = len(batch.report.held)
        super()._apply(batch, record, event)
        if len(batch.report.held) == held:
            self._applying.append(record)

    async def dead_letter_only(self, record: InputRecord, why: Invalid) -> BatchReport:
        self.dead[where(record)] += 1
        return await super().dead_letter_only(record, why)


async def test_a_failed_batch_split_never_applies_a_balance_without_its_settings_before() -> None:
    clock = Monotonic()
    log = Log()
    db, uow = fake_uow_factory()
    handler = _FailsWith(uow, _alignment(clock), set())
    processor = BatchProcessor(handler, lambda exc: False)
    await handler.handle([log.settings("a", T - timedelta(minutes=1))])
    # In one batch, in this order: a due balance of a, a's off-switch of the same instant
    # (applied first: settings first), and a record of a that fails whatever happens.
    due = log.balance("a", "5.00", T + timedelta(seconds=2))
    off = log.settings("a", T + timedelta(seconds=2), auto=False)
    poison = log.balance("a", "4.00", T + timedelta(seconds=3))
    handler.poisons.add(where(poison))
    report = await processor.process([due, off, poison])
    # The poison is found by trials (rolled back) and dead-lettered; then the off-switch and
    # the balance go together, in event-time order: the balance is blocked. Split in the
    # batch's order (before 8350998), the balance went alone first, with the settings topic
    # already read past it, and took a's day.
    assert _days(db) == []
    assert report.held == []
    assert report.counts[CountKey.dead_letter(DeadLetterReason.PROCESSING_ERROR)] == 1
    wallet = db.committed.wallets["a"]
    assert wallet.settings is not None
    assert not wallet.settings.auto_trigger
