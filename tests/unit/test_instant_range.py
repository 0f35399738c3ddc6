"""Instants at the ends of what the service can store: outside, a schema violation at the
door; inside, at either edge and in the farthest timezones, handled like any other event."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from service.config import Topics
from service.contract.codec import Invalid, decode_balance, decode_settings
from service.contract.types import EARLIEST_INSTANT, LATEST_INSTANT
from service.domain import rules
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire
from tests.fakes import fake_uow_factory

TOPICS = Topics()
FAR_ZONES = ("Pacific/Kiritimati", "Etc/GMT+12", "UTC")  # UTC+14, UTC-12


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:30:00+01:00",  # year 0 in UTC
        "9999-12-31T23:30:00-01:00",  # year 10000 in UTC
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0001-01-02T23:59:59.999999Z",
        "9999-12-29T00:00:00Z",
    ],
)
def test_an_instant_outside_the_range_is_a_schema_violation(text: str) -> None:
    balance = balance_wire("c-1", "1.00") | {"occurred_at": text}
    settings = settings_wire("c-1") | {"occurred_at": text}
    for decoded in (
        decode_balance(dumps(balance), b"c-1"),
        decode_settings(dumps(settings), b"c-1"),
    ):
        assert isinstance(decoded, Invalid)
        assert decoded.reason == "schema_violation"
        assert "occurred_at" in decoded.detail
        assert "can store" in decoded.detail


@pytest.mark.parametrize("zone", FAR_ZONES)
async def test_the_edges_are_handled_in_the_farthest_timezones(zone: str) -> None:
    """Settings and a due balance at either edge (the service's clock at a real instant): the
    earliest are an old day and top nothing up, the latest are future-dated and dead-lettered;
    nothing fails."""
    early, late = EARLIEST_INSTANT, LATEST_INSTANT - timedelta(microseconds=1)
    batch: list[InputRecord] = []
    for customer, at in (("c-early", early), ("c-late", late)):
        settings = settings_wire(customer, threshold="10.00", at=at, timezone=zone)
        balance = balance_wire(customer, "5.00", at=at, sequence=1)
        key = customer.encode()
        batch += [
            InputRecord(TOPICS.settings_updated, 0, len(batch), key, dumps(settings)),
            InputRecord(TOPICS.wallet_balance_changed, 0, len(batch), key, dumps(balance)),
        ]
    db, uow = fake_uow_factory()
    handler = BatchHandler(uow, lambda: NOW, rules.Policy(), TOPICS)
    await handler.handle(batch)
    assert db.committed.daily_keys == []
    dead = [r for r in db.committed.outbox if r.topic == TOPICS.dead_letter]
    reasons = [base64.b64decode(v) for r in dead for k, v in r.headers if k == "dlq_reason"]
    assert [r.key for r in dead] == [b"c-late", b"c-late"]
    assert reasons == [b"future_dated", b"future_dated"]
