"""Hypothesis searches over customers a and a2 (paid by partner b), d (paid by a) and c, records
of both topics in 1-4 fetches with gaps (some longer than the bound), driven as the consumer
drives them:

- in any fetch order, with unreadable records: each partition's records are applied in offset
  order; held records neither stay held for good nor are decided again and again while nothing
  changes; and a trial (rolled back) of any part of a batch leaves the alignment as it was;
- fetched in event time across partitions: the end state is the same with the wait as without.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.unit.test_alignment import BAL, T
from tests.unit.test_partner_wait import BEFORE, _consumer, _Log, _state

PAYS = {"a": "b", "a2": "b", "d": "a"}  # customer -> partner that pays it


@dataclass(frozen=True)
class _R:
    customer: str
    kind: str  # bal, set, bad
    at: int
    auto: bool
    amount: str


_rs = st.builds(
    _R,
    customer=st.sampled_from(["a", "a", "b", "b", "a2", "d", "c"]),
    kind=st.sampled_from(["bal", "bal", "set", "bad"]),
    at=st.integers(-2, 3),
    auto=st.booleans(),
    amount=st.sampled_from(("5.00", "50.00", "150.00")),
)


def _snap(align: Any) -> Any:
    return copy.deepcopy(
        (align._marks, align._behind._held, align._behind._pays, align._since, align._epoch)
    )


@st.composite
def _scenario(draw: st.DrawFn) -> tuple[Any, ...]:
    part = {c: draw(st.integers(0, 2)) for c in ("a", "b", "a2", "d", "c")}
    b_auto = draw(st.booleans())
    recs = draw(st.lists(_rs, min_size=1, max_size=9))
    sort = draw(st.booleans())
    if sort:
        recs = sorted(recs, key=lambda r: (r.at, r.customer != "b"))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(recs) - 1)), max_size=3)))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.6]), min_size=4, max_size=4))
    return part, b_auto, recs, cuts, gaps


def _build(
    part: dict[str, int], b_auto: bool, recs: list[_R], cuts: list[int], b_bal: str = "500.00"
) -> Any:
    log = _Log()
    prior = [
        log.settings("b", BEFORE, part["b"], auto=b_auto),
        log.balance("b", b_bal, BEFORE, part["b"]),
    ]
    for c, p in PAYS.items():
        prior.append(log.settings(c, BEFORE, part[c], method="master_account", partner_id=p))
        prior.append(log.balance(c, "200.00", BEFORE, part[c]))
    prior.append(log.settings("c", BEFORE, part["c"]))
    batch = []
    for r in recs:
        at = T + timedelta(seconds=r.at)
        n = part[r.customer]
        if r.kind == "set":
            paid: dict[str, Any] = (
                {"method": "master_account", "partner_id": PAYS[r.customer]}
                if r.customer in PAYS
                else {}
            )
            batch.append(log.settings(r.customer, at, n, auto=r.auto, **paid))
        elif r.kind == "bal":
            batch.append(log.balance(r.customer, r.amount, at, n))
        else:
            batch.append(log.record(BAL, n, r.customer, {"garbage": True}))
    bounds = [0, *cuts, len(batch)]
    fetches = [batch[i:j] for i, j in itertools.pairwise(bounds) if batch[i:j]]
    return prior, fetches


async def _drive(prior: Any, fetches: Any, gaps: list[float], trials: bool) -> Any:
    run = _consumer()
    align = run.handler._alignment
    applied: list[tuple[str, int, int, bytes | None]] = []
    real_apply = run.handler._apply

    def spy(batch: Any, record: Any, event: Any) -> None:
        before = len(batch.report.held)
        real_apply(batch, record, event)
        if not batch.trial and len(batch.report.held) == before and b"garbage" not in record.value:
            applied.append((record.topic, record.partition, record.offset, record.key))

    run.handler._apply = spy  # type: ignore[method-assign]
    real_handle = run.handler.handle

    async def handle(given: Any, *, trial: bool = False) -> Any:
        if trials and not trial and given:
            for n in {1, len(given) // 2, len(given)}:
                if n:
                    snap = _snap(align)
                    await real_handle(given[:n], trial=True)
                    assert _snap(align) == snap, "a trial left state in the alignment"
        return await real_handle(given, trial=trial)

    run.handler.handle = handle  # type: ignore[method-assign,assignment]

    async def drain() -> None:
        idle = 0
        for _ in range(60):
            if not run.pending:
                return
            wait = run.pending.retry_in
            assert wait is not None
            run.clock.advance(wait)
            due = run.pending.due()
            if not due:
                run.pending.recount()
                idle += 1
                assert idle < 3, "retry_in 0 with nothing due"
                continue
            n = len(applied)
            before = {(r.topic, r.partition, r.offset) for r in run.pending.records()}
            await run._apply(due)
            after = {(r.topic, r.partition, r.offset) for r in run.pending.records()}
            if wait == 0 and len(applied) == n and before == after:
                idle += 1
                assert idle < 3, f"busy: {sorted(after)}"
            else:
                idle = 0
        raise AssertionError("stuck")

    await run.fetch(prior)
    await drain()
    for fetch, gap in zip(fetches, gaps, strict=False):
        run.clock.advance(gap)
        await run.fetch(fetch)
    await drain()
    return applied


_NO_EXPLAIN = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)


@settings(
    max_examples=200,
    deadline=None,
    phases=_NO_EXPLAIN,
    suppress_health_check=list(HealthCheck),
)
@given(s=_scenario())
def test_order_kept_nothing_stuck_or_busy_and_trials_leave_nothing(s: Any) -> None:
    part, b_auto, recs, cuts, gaps = s
    prior, fetches = _build(part, b_auto, recs, cuts)
    applied = asyncio.run(_drive(prior, fetches, gaps, trials=True))
    seen: dict[Any, int] = {}
    for topic, partition, offset, key in applied:
        last = seen.get((topic, partition, key), -1)
        assert offset > last, f"{key} {topic}[{partition}]@{offset} applied after @{last}"
        seen[(topic, partition, key)] = offset


# --- the end state, for records fetched in event time ----------------------------------------


@st.composite
def _in_event_time(draw: st.DrawFn) -> tuple[Any, ...]:
    """Readable records only, in event time across partitions: at the same instant b's first
    (a record dated T tells the state at T), then a's, then the others; settings first within
    a customer. b's balance 500.00 or 150.00."""
    part = {c: draw(st.integers(0, 2)) for c in ("a", "b", "a2", "d", "c")}
    b_auto = draw(st.booleans())
    b_bal = draw(st.sampled_from(["500.00", "150.00"]))
    readable = _rs.filter(lambda r: r.kind != "bad")
    recs = draw(st.lists(readable, min_size=1, max_size=10))
    recs = sorted(recs, key=lambda r: (r.at, {"b": 0, "a": 1}.get(r.customer, 2), r.kind != "set"))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(recs) - 1)), max_size=3)))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.6]), min_size=4, max_size=4))
    return part, b_auto, b_bal, recs, cuts, gaps


async def _end_state(prior: Any, fetches: Any, gaps: Any, bound: float) -> Any:
    run = _consumer(bound)
    await run.fetch(prior)
    await run.drain(60)
    for fetch, gap in zip(fetches, gaps, strict=False):
        run.clock.advance(gap)
        await run.fetch(fetch)
    await run.drain(60)
    keys, published, _ = _state(run.db)
    # a partner's credits in the order reserved may differ; as a set they must not
    wallets = sorted(
        (c, replace(w, credits_out=tuple(sorted(w.credits_out, key=lambda x: x.event_id or ""))))
        for c, w in run.db.committed.wallets.items()
    )
    return keys, published, wallets


@settings(
    max_examples=200,
    deadline=None,
    phases=_NO_EXPLAIN,
    suppress_health_check=list(HealthCheck),
)
@given(s=_in_event_time())
def test_records_fetched_in_event_time_come_to_the_same_with_the_wait_as_without(s: Any) -> None:
    """Wider than test_partner_wait.py's property: a and a2 paid by b, d paid by a, fetches
    with gaps (some longer than the bound): the end state (daily keys, everything published,
    every wallet) is the same with the wait as without it."""
    part, b_auto, b_bal, recs, cuts, gaps = s
    prior, fetches = _build(part, b_auto, recs, cuts, b_bal)
    waited = asyncio.run(_end_state(prior, fetches, gaps, 0.5))
    assert waited == asyncio.run(_end_state(prior, fetches, gaps, 0))
