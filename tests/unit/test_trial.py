"""A trial (`BatchHandler.handle(records, trial=True)`, how BatchProcessor looks for the failing
records of one customer) does everything a transaction does, then keeps nothing: no row, no
note in the alignment, no trace span; another lane's notes made meanwhile stay."""

from __future__ import annotations

from datetime import timedelta

from service.domain import rules
from service.service_layer.event_order import Decoded
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord
from tests.factories import NOW
from tests.fakes import fake_uow_factory
from tests.unit.test_alignment import BAL, SET, TOPICS, Log, Monotonic, T, _alignment


class _Spans:
    """A tracer that counts the decisions it was asked to record."""

    def __init__(self) -> None:
        self.spans: list[str] = []

    def decided(
        self, record: InputRecord, customer_id: str, outcome: str
    ) -> tuple[tuple[str, str], ...]:
        self.spans.append(customer_id)
        return ()


async def test_a_trial_commits_nothing_and_leaves_the_alignment_as_it_was() -> None:
    clock, log = Monotonic(), Log()
    align = _alignment(clock)
    db, uow = fake_uow_factory()
    spans = _Spans()
    handler = BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS, spans, align)
    on = log.settings("a", T - timedelta(minutes=1))
    await handler.handle([on])
    commits, marks = db.commits, align.read_up_to(SET, 0)
    # A due balance with the settings partition read past it (applied, a top-up decided) and
    # one read past nothing on partition 1 (held: it would wait).
    bal = log.balance("a", "5.00", T - timedelta(minutes=1))
    b_on = log.settings("b", T - timedelta(minutes=2), partition=1)
    await handler.handle([b_on])
    b_marks, commits = align.read_up_to(SET, 1), db.commits
    waits = log.balance("b", "5.00", T, partition=1)

    report = await handler.handle([bal, waits], trial=True)

    assert [h.customer_id for h in report.held] == ["b"], "the trial held b's balance"
    assert report.log, "the trial decided a's top-up"
    assert db.commits == commits
    assert db.committed.daily_keys == []
    assert spans.spans == [], "no span for a decision rolled back"
    assert align.waiting() == {}
    assert align.until(BAL, 1, waits.offset) is None
    assert align.read_up_to(BAL, 0) is None
    assert align.read_up_to(BAL, 1) is None
    assert (align.read_up_to(SET, 0), align.read_up_to(SET, 1)) == (marks, b_marks)

    # For real, the same records take a's day and hold b's balance, with its bound running.
    report = await handler.handle([bal, waits])
    assert len(db.committed.daily_keys) == 1
    assert spans.spans == ["a"]
    assert align.waiting() == {"b": (BAL, 1, waits.offset)}
    assert align.until(BAL, 1, waits.offset) is not None


def test_undoing_a_trial_keeps_what_another_lane_noted_meanwhile() -> None:
    clock, log = Monotonic(), Log()
    align = _alignment(clock)
    handler = BatchHandler(fake_uow_factory()[1], lambda: NOW, rules.Policy(), TOPICS)
    mine = [log.balance("a", "5.00", T, partition=0)]
    theirs = [log.balance("b", "5.00", T, partition=1)]

    def decoded(records: list[InputRecord]) -> list[Decoded]:
        return [(r, handler.decode(r)) for r in records]

    with align.trial(decoded(mine)):
        for batch, customer in ((mine, "a"), (theirs, "b")):  # both lanes note, hold and wait
            align.fetched(decoded(batch), NOW, NOW)
            record = batch[0]
            assert align.hold(BAL, record.partition, record.offset, customer, T) > 0
    assert align.waiting() == {"b": (BAL, 1, theirs[0].offset)}
    assert align.read_up_to(BAL, 1) == T
    assert align.read_up_to(BAL, 0) is None
    assert align.until(BAL, 0, mine[0].offset) is None
    assert align.until(BAL, 1, theirs[0].offset) is not None


def test_a_trial_across_a_new_assignment_forgets_what_it_noted() -> None:
    clock, log = Monotonic(), Log()
    align = _alignment(clock)
    handler = BatchHandler(fake_uow_factory()[1], lambda: NOW, rules.Policy(), TOPICS)
    record = log.balance("a", "5.00", T)
    decoded: list[Decoded] = [(record, handler.decode(record))]
    align.fetched(decoded, NOW, NOW)
    with align.trial(decoded):
        align.assign([(BAL, 0), (SET, 0)])
        align.fetched(decoded, NOW, NOW)  # the trial goes on after the new assignment
        assert align.hold(BAL, 0, record.offset, "a", T) > 0
    assert align.read_up_to(BAL, 0) is None, "a mark of the old assignment came back"
    assert align.waiting() == {}, "a rolled-back trial left a record waiting"
    assert align.until(BAL, 0, record.offset) is None
