"""The replay's pieces without a broker or a database: the memory adapter's read-through, the
outbox tap, the report rows and files, the batch order, the time options."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from aiokafka import ConsumerRecord, TopicPartition

from service.adapters.kafka.time_merge import TimeMerge
from service.adapters.kafka.window import Window
from service.adapters.memory import MemoryDatabase
from service.config import Topics
from service.domain import rules
from service.domain.model import Origin, PaymentMethod, Settings, Wallet
from service.entrypoints.cli_support import parse_time
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import DecisionLog, InputRecord, OutboxRecord
from service.service_layer.replay import (
    OutboxTap,
    ReplayRow,
    Summary,
    by_customer,
    rows_of,
    write_report,
)
from tests.factories import NOW, balance_wire, dumps

TOPICS = Topics()
TODAY = NOW.date()


def cheque_wallet(customer_id: str, *, taken: frozenset[date] = frozenset()) -> Wallet:
    """A wallet as PostgreSQL holds it: cheque settings, threshold 10.00, no balance yet."""
    settings = Settings(
        payment_method=PaymentMethod.CHEQUE_TT,
        auto_trigger=True,
        trigger_amount=Decimal("100.00"),
        limit_threshold=Decimal("10.00"),
        currency="USD",
        timezone=None,
        partner_id=None,
        origin=Origin.FINANCE_APP,
        version=1,
        occurred_at=NOW - timedelta(hours=1),
        event_id="settings-1",
    )
    return Wallet(customer_id, settings, attempt_dates=taken)


class Source:
    """Stands for PostgreSQL behind the dry run: counts what it is asked."""

    def __init__(self, *wallets: Wallet) -> None:
        self.wallets = {w.customer_id: w for w in wallets}
        self.asked: list[list[str]] = []

    async def load(self, customer_ids: Sequence[str], since: date) -> dict[str, Wallet]:
        self.asked.append(list(customer_ids))
        return {i: self.wallets[i] for i in customer_ids if i in self.wallets}


def handler_on(db: MemoryDatabase) -> tuple[BatchHandler, OutboxTap]:
    tap = OutboxTap(db.unit_of_work)
    return BatchHandler(tap, lambda: NOW, rules.Policy(), TOPICS), tap


_offsets = iter(range(10**6))


def balance_record(customer_id: str, amount: str, sequence: int) -> InputRecord:
    body = balance_wire(customer_id, amount, at=NOW - timedelta(minutes=1), sequence=sequence)
    return InputRecord(
        TOPICS.wallet_balance_changed, 0, next(_offsets), customer_id.encode(), dumps(body)
    )


async def test_wallets_are_read_through_once_then_changed_in_memory_only() -> None:
    source = Source(cheque_wallet("known"))
    db = MemoryDatabase(source.load)
    handler, tap = handler_on(db)

    first = await handler.handle([balance_record("known", "5.00", 1)])
    second = await handler.handle(
        [balance_record("known", "50.00", 2), balance_record("known", "3.00", 3)]
    )
    new = await handler.handle([balance_record("unknown", "1.00", 1)])

    # The known wallet's settings came from the source; the next batch saw the first one's
    # daily key (kept in memory), and asked the source nothing more about that wallet.
    assert [e.outcome for e in first.log] == ["triggered"]
    assert [(e.outcome, e.reason) for e in second.log] == [("suppressed", "daily_key_taken")]
    assert new.log == []  # no settings anywhere: nothing due
    assert source.asked == [["known"], ["unknown"]]
    assert source.wallets["known"] == cheque_wallet("known")  # the source is never written
    assert [c.topup.customer_id for c in db.committed.daily_keys] == ["known"]
    assert db.committed.wallets["unknown"].settings is None
    assert [r.topic for r in tap.take()] == [TOPICS.invoice_requested]


async def test_daily_keys_read_from_the_source_are_taken() -> None:
    source = Source(cheque_wallet("known", taken=frozenset({TODAY})))
    db = MemoryDatabase(source.load)
    handler, tap = handler_on(db)

    report = await handler.handle([balance_record("known", "5.00", 1)])

    assert [(e.outcome, e.reason) for e in report.log] == [("suppressed", "daily_key_taken")]
    assert db.committed.daily_keys == []
    assert db.committed.wallets["known"].attempt_dates == frozenset()  # as in the table
    assert tap.take() == []
    async with db.unit_of_work() as uow:  # the key also holds against a claim
        wallets = await uow.store.lock_wallets(["known"], TODAY - timedelta(days=3))
        assert wallets["known"].attempt_dates == frozenset({TODAY})


async def test_a_rolled_back_read_is_read_again_and_queues_nothing() -> None:
    source = Source(cheque_wallet("known"))
    db = MemoryDatabase(source.load)
    tap = OutboxTap(db.unit_of_work)
    row = OutboxRecord("k", "t", b"known", b"{}")
    async with tap() as uow:
        await uow.store.lock_wallets(["known"], TODAY)
        await uow.store.add_outbox([row])  # never committed
    assert tap.take() == []
    assert db.committed.wallets == {}
    async with tap() as uow:
        await uow.store.lock_wallets(["known"], TODAY)
        await uow.store.add_outbox([row])
        await uow.commit()
    assert tap.take() == [row]
    assert source.asked == [["known"], ["known"]]


async def test_a_loader_answering_what_was_not_asked_is_a_bug() -> None:
    async def wrong(customer_ids: Sequence[str], since: date) -> dict[str, Wallet]:
        return {"someone-else": Wallet("someone-else")}

    db = MemoryDatabase(wrong)
    with pytest.raises(ValueError, match="not asked for"):
        async with db.unit_of_work() as uow:
            await uow.store.lock_wallets(["known"], TODAY)


def test_rows_name_the_customer_of_an_undecodable_record_and_the_output_event() -> None:
    bad = InputRecord(TOPICS.wallet_balance_changed, 1, 7, b"cust-d", b"{oops")
    good = InputRecord(TOPICS.wallet_balance_changed, 1, 8, b"cust-a", b"{}")
    log = [
        DecisionLog(bad.topic, 1, 7, None, None, "dead_lettered", "invalid_json", "oops"),
        DecisionLog(good.topic, 1, 8, "cust-a", "e1", "triggered", None, "", "cheque_tt", TODAY),
        DecisionLog(good.topic, 1, 9, "cust-b", "e2", "applied", None),  # not reported
    ]
    event = OutboxRecord(
        "out-1",
        TOPICS.invoice_requested,
        b"cust-a",
        json.dumps({"customer_id": "cust-a", "business_date": TODAY.isoformat()}).encode(),
    )
    dead = OutboxRecord("dlq/x", TOPICS.dead_letter, b"cust-d", b"{oops")

    rows = rows_of(log, [bad, good], [event, dead], TOPICS)

    assert [(r.customer_id, r.outcome, r.output_topic, r.output_event_id) for r in rows] == [
        ("cust-d", "dead_lettered", TOPICS.dead_letter, None),
        ("cust-a", "triggered", TOPICS.invoice_requested, "out-1"),
    ]
    assert [r.customer_id for r in by_customer(rows)] == ["cust-a", "cust-d"]
    summary = Summary()
    summary.add([bad, good], rows)
    assert summary.outputs == {TOPICS.dead_letter: 1, TOPICS.invoice_requested: 1}


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_report_files(tmp_path: Path, suffix: str) -> None:
    row = ReplayRow("cust-a", "t", 0, 3, "e1", "triggered", None, "cheque_tt", TODAY, "o", "x")
    path = tmp_path / f"report{suffix}"
    write_report(path, [row])
    if suffix == ".json":
        assert json.loads(path.read_text()) == [
            {
                "customer_id": "cust-a",
                "topic": "t",
                "partition": 0,
                "offset": 3,
                "event_id": "e1",
                "outcome": "triggered",
                "reason": None,
                "method": "cheque_tt",
                "business_date": TODAY.isoformat(),
                "output_topic": "o",
                "output_event_id": "x",
                "detail": "",
            }
        ]
    else:
        assert path.read_text().splitlines() == [
            "customer_id,topic,partition,offset,event_id,outcome,reason,method,business_date,"
            "output_topic,output_event_id,detail",
            f"cust-a,t,0,3,e1,triggered,,cheque_tt,{TODAY.isoformat()},o,x,",
        ]


def _consumed(topic: str, partition: int, offset: int, timestamp: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic, partition, offset, timestamp, 0, b"k", b"v", None, 1, 1, [("h", b"1")]
    )


def test_the_window_is_given_out_in_broker_time_each_partition_in_its_order() -> None:
    settings, balances, idle = (
        TopicPartition("s", 0),
        TopicPartition("b", 0),
        TopicPartition("b", 1),
    )
    window = Window({settings: 0, balances: 0, idle: 4}, {settings: 2, balances: 4, idle: 4})
    merge = TimeMerge(window, high_water=3)
    assert merge.wanted() == [balances, settings]  # the idle partition has nothing in the window

    merge.add(balances, [_consumed("b", 0, 0, 10), _consumed("b", 0, 1, 5)], position=2)
    assert merge.take(10) == []  # the settings may hold something earlier: wait for them
    merge.add(settings, [_consumed("s", 0, 0, 20), _consumed("s", 0, 1, 40)], position=2)
    batch = merge.take(10)
    # b[1] is dated before b[0] but stays after it; then b's next record must be known first
    assert [(r.topic, r.offset) for r in batch] == [("b", 0), ("b", 1)]
    assert batch[0].headers == (("h", b"1"),)
    assert merge.applied_to() == {settings: 0, balances: 0, idle: 4}  # given out, not applied
    merge.applied(batch)
    assert merge.applied_to() == {settings: 0, balances: 2, idle: 4}

    # Offset 2 of b is a gap; 4 is past the stop offset and is dropped.
    merge.add(balances, [_consumed("b", 0, 3, 50), _consumed("b", 0, 4, 60)], position=5)
    last = merge.take(10)
    assert [(r.topic, r.offset) for r in last] == [("s", 0), ("s", 1), ("b", 3)]
    assert not merge.done()
    merge.applied(last)
    assert merge.done()
    assert merge.applied_to() == {settings: 2, balances: 4, idle: 4}
    assert merge.done_count() == window.total == 6


def test_a_full_buffer_is_not_fetched_from() -> None:
    a, b = TopicPartition("b", 0), TopicPartition("b", 1)
    merge = TimeMerge(Window({a: 0, b: 0}, {a: 10, b: 10}), high_water=2)
    merge.add(a, [_consumed("b", 0, 0, 1), _consumed("b", 0, 1, 2)], position=2)
    assert merge.wanted() == [b]
    assert merge.take(10) == []  # nothing of b yet


def test_times_need_an_offset() -> None:
    assert parse_time("2026-11-25T10:00:00+01:00", "--from").utcoffset() == timedelta(hours=1)
    assert parse_time("2026-11-25T10:00:00Z", "--from").utcoffset() == timedelta(0)
    with pytest.raises(typer.BadParameter, match="no UTC offset"):
        parse_time("2026-11-25T10:00:00", "--from")
    with pytest.raises(typer.BadParameter, match="not an RFC 3339 time"):
        parse_time("yesterday", "--to")
