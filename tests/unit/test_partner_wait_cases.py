"""The cases an adversarial review of the partner wait (55e821d) found: each failed there.

A partner's wallet joins customers: a top-up a partner pays must see the partner's balance as of
its own time, and nothing held may be overtaken by a later record of its customer
(behind.py). D1-D5 compare the end state with the wait (bound 0.5 s) and without it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.unit.test_alignment import BAL, T
from tests.unit.test_partner_wait import (
    BEFORE,
    _Case,
    _consumer,
    _Log,
    _prior,
    _run,
)


def test_d1_top_up_overtakes_partner_record_when_both_bounds_run_out_together() -> None:
    """c's due record on partition 0 is held before b's; so Pending keeps (BAL, 0) ahead of
    (BAL, 1), and when the three bounds run out together a's top-up is decided before b's
    drop: its partner wait is 0 (b's bound ran out) though b's drop is still in _waiting."""
    log = _Log()
    prior = [*_prior(log, 0, 1, b_auto=True), log.settings("c", BEFORE, 0)]
    fetch = [
        log.balance("c", "5.00", T - timedelta(seconds=1), 0),  # due for c, waits
        log.balance("b", "5.00", T, 1),  # due for b, waits
        log.balance("a", "5.00", T, 0),  # due for a, paid by b
    ]
    case = _Case(prior, [fetch])
    waited, ref = asyncio.run(_run(case, 0.5)), asyncio.run(_run(case, 0))
    assert waited == ref


def test_d2_top_up_overtakes_partner_record_held_behind_another_top_up_it_pays() -> None:
    """b pays a2 and a. a2's due record @T-2s waits (its settings partition is not read);
    b's drop to 50.00 @T-1s waits behind it (b pays a2); a's due record @T waits too. When
    the bounds run out, a2's and a's records come again, b's drop does not (it waits behind
    a2, which had a deadline when due() looked). a's partner wait reads the bound of b's drop
    (fetched with a2's: run out) and lets a go: credited from b's 500.00 less a2's 100.00,
    though in event time b had 50.00 (a's top-up fails)."""
    log = _Log()
    paid: dict[str, Any] = {"method": "master_account", "partner_id": "b"}
    prior = [
        *_prior(log, 2, 1, b_auto=False),
        log.settings("a2", BEFORE, 0, **paid),
        log.balance("a2", "200.00", BEFORE, 0),
    ]
    fetch = [
        log.balance("a2", "5.00", T - timedelta(seconds=2), 0),
        log.balance("b", "50.00", T - timedelta(seconds=1), 1),
        log.balance("a", "5.00", T, 2),
    ]
    case = _Case(prior, [fetch])
    waited, ref = asyncio.run(_run(case, 0.5)), asyncio.run(_run(case, 0))
    assert waited == ref


def test_d3_partner_record_overtakes_top_up_held_behind_a_third_customer() -> None:
    """a is paid by b and pays d. d's due record @T-2s waits; a's due record @T is held behind
    it (a pays d) by _blocking, before the rules decide it, so hold(..., "b") never runs and
    b's records after T do not wait behind a's. b's drop to 50.00 @T+1s is applied at once;
    a's top-up, decided later, reads 50.00 and fails. In event time b had 500.00: credited."""
    log = _Log()
    prior = [
        *_prior(log, 2, 1, b_auto=False),
        log.settings("d", BEFORE, 0, method="master_account", partner_id="a"),
        log.balance("d", "200.00", BEFORE, 0),
    ]
    fetch = [
        log.balance("d", "5.00", T - timedelta(seconds=2), 0),  # due, paid by a: waits
        log.balance("a", "5.00", T, 2),  # due, paid by b: held behind d's
        log.balance("b", "50.00", T + timedelta(seconds=1), 1),  # goes at once
    ]
    case = _Case(prior, [fetch])
    waited, ref = asyncio.run(_run(case, 0.5)), asyncio.run(_run(case, 0))
    assert waited == ref


def test_d4_settings_record_overtakes_a_held_one_of_its_partition() -> None:
    """a's top-up @T (paid by b) waits. b's settings @T+1s (SET[1]) waits behind it, then b's
    balance @T+0.5s (BAL[1]) too, and _waiting["b"] becomes that balance (the earlier one).
    b's settings @T-1s comes next on SET[1] (after the T+1s one): it is compared with the
    balance only (another topic, earlier), and with a's top-up (not later), so it is applied
    while the T+1s settings record before it in SET[1] is still held. It is then not stale: it
    turns b's auto-trigger on and tops b up. In partition order it is stale (older than the
    T+1s one): no top-up for b."""
    log = _Log()
    prior = [
        log.settings("a", BEFORE, 0, method="master_account", partner_id="b"),
        log.settings("b", BEFORE, 1, auto=False),
        log.balance("b", "5.00", BEFORE, 1),
        log.balance("a", "200.00", BEFORE, 0),
    ]
    first = [
        log.balance("a", "5.00", T, 0),  # due, paid by b: waits (SET[0] not read up to T)
        log.settings("b", T + timedelta(seconds=1), 1, auto=False, trigger="50.00"),
        log.balance("b", "6.00", T + timedelta(milliseconds=500), 1),
    ]
    late = [log.settings("b", T - timedelta(seconds=1), 1, auto=True)]
    case = _Case(prior, [first, late])
    waited, ref = asyncio.run(_run(case, 0.5)), asyncio.run(_run(case, 0))
    assert waited == ref


def test_d5_top_up_ignores_partner_record_held_behind_a_later_one() -> None:
    """b's drop to 5.00 @T+1s is due for b and waits; b's 50.00 @T-1s comes after it in
    BAL[1] (a producer's clock) and is held behind it. a's top-up @T (paid by b, its own
    settings partition read past T) compares its time with b's waiting record only (T+1s:
    later) and goes, credited from b's 500.00. Applied in partition order b has 5.00 (the
    50.00 is stale), in event time 50.00: either way a's top-up fails."""
    log = _Log()
    prior = _prior(log, 0, 1, b_auto=True)
    fetch = [
        log.balance("b", "5.00", T + timedelta(seconds=1), 1),  # due for b: waits
        log.balance("b", "50.00", T - timedelta(seconds=1), 1),  # held behind it
        log.settings("c", T + timedelta(seconds=2), 0),  # a's settings partition read
        log.balance("a", "5.00", T, 0),  # due, paid by b
    ]
    case = _Case(prior, [fetch])
    waited, ref = asyncio.run(_run(case, 0.5)), asyncio.run(_run(case, 0))
    assert waited == ref


def test_d6_partner_record_overtakes_its_unreadable_record() -> None:
    """a's top-up @T (paid by b) waits. b's unreadable record (keyed b) is held behind it by
    Alignment.behind (_entry includes the top-ups b pays, whatever their time); b's balance
    @T next in BAL[1] is not later than a's top-up, so it is applied at once: it overtakes
    the held record before it in b's partition (its dead letter comes after it)."""
    asyncio.run(_d6())


async def _d6() -> None:
    log, run = _Log(), _consumer()
    await run.fetch(_prior(log, 0, 1, b_auto=False))
    applied: list[tuple[str, int, int]] = []
    real = run.handler._apply

    def spy(batch: Any, record: Any, event: Any) -> None:
        before = len(batch.report.held)
        real(batch, record, event)
        if len(batch.report.held) == before:
            applied.append((record.topic, record.partition, record.offset))

    run.handler._apply = spy  # type: ignore[method-assign]
    due = log.balance("a", "5.00", T, 0)  # waits: SET[0] not read up to T
    bad = log.record(BAL, 1, "b", {"garbage": True})
    same_instant = log.balance("b", "50.00", T, 1)
    run.clock.advance(0.1)
    await run.fetch([due, bad, same_instant])
    await run.drain()
    b_partition = [a for a in applied if a[:2] == (BAL, 1)]
    assert b_partition == [(BAL, 1, bad.offset), (BAL, 1, same_instant.offset)]
