"""A partner's wallet and the wait for the other input topic (contract v2, ADR 0004): an open
defect, pinned down here. While a due record waits, only its own customer's later records wait
behind it; the customers whose top-ups its wallet pays go on, and see its balance as it was
before the record that waits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.domain import rules
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.fakes import fake_uow_factory
from tests.unit.test_alignment import BAL, BOUND, SET, TOPICS, Monotonic, _alignment
from tests.unit.test_split_cases import _published


def _rec(topic: str, partition: int, offset: int, key: str, body: dict[str, object]) -> InputRecord:
    return InputRecord(topic, partition, offset, key.encode(), dumps(body))


@pytest.mark.xfail(
    strict=True,
    reason="open: a record that waits does not hold back the top-ups its wallet pays for",
)
async def test_a_held_partner_balance_funds_its_customer() -> None:
    """b pays for a (master_account), has 500.00 and its own auto-trigger on. One batch: b
    drops to 5.00 @T (due for b itself: it waits, as nothing of b's settings partition is
    read up to T), then a's 5.00 @T (due, paid by b; a's settings partition is read past T).
    In event time b has 5.00 when a is decided, so a's top-up fails
    (partner_insufficient_funds). Today a goes on while b's record waits, and is credited
    from b's 500.00."""
    clock = Monotonic()
    db, uow = fake_uow_factory()
    handler = BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS, alignment=_alignment(clock))
    at = NOW - timedelta(minutes=5)
    await handler.handle(
        [
            _rec(SET, 1, 0, "b", settings_wire("b", at=at - timedelta(minutes=1))),
            _rec(BAL, 1, 0, "b", balance_wire("b", "500.00", at=at - timedelta(minutes=1))),
            _rec(
                SET,
                0,
                0,
                "a",
                settings_wire(
                    "a", method="master_account", partner_id="b", at=at - timedelta(minutes=1)
                ),
            ),
        ]
    )
    drop = _rec(BAL, 1, 1, "b", balance_wire("b", "5.00", at=at))
    read_past = _rec(SET, 0, 1, "c", settings_wire("c", at=at + timedelta(seconds=1)))
    due = _rec(BAL, 0, 0, "a", balance_wire("a", "5.00", at=at))
    report = await handler.handle([drop, read_past, due])
    held = [(h.topic, h.partition, h.offset) for h in report.held]
    assert (BAL, 1, 1) in held, "b's drop waits for b's settings partition"
    clock.advance(BOUND)  # its bound runs out: decided again
    await handler.handle([drop])
    outcomes = [o for o in _published(db) if o[0] != TOPICS.auto_topup_notice]
    assert (TOPICS.top_up_failed, "partner_insufficient_funds") in outcomes
    assert (TOPICS.credit_issued, "master_account") not in outcomes
