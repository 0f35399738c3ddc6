"""`auto-topup dlq list|redrive`, run as a subprocess against the real stack.

The service's clock is pinned (`clock_offset`), and every event and dead letter is dated from it.
`dlq` itself decides nothing by the time: it shows dlq_at as it is."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from service.contract import messages
from tests.cli_tools import CliRun, run_cli
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, pinned_offset, service_now
from tests.factories import balance_wire, dumps, settings_wire
from tests.kafka_tools import (
    KAFKA_REQUEST_TIMEOUT_MS,
    WAIT_SECONDS,
    Record,
    TopicReader,
    ensure_topics,
    partitions_of,
)
from tests.service_process import ServiceProcess, Topics

Headers = list[tuple[str, bytes]]


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), whatever the
    hour the tests run at; every event is dated from it (`flow.now()`, `service_now`)."""
    return pinned_offset()


async def dlq_cli(env: dict[str, str], *args: str) -> CliRun:
    """`auto-topup dlq ...` as an operator runs it (stdout piped, so no terminal width)."""
    return await run_cli(env, "dlq", *args)


async def send(
    bootstrap: str, records: Sequence[tuple[str, bytes | None, bytes | None, Headers]]
) -> list[tuple[str, int, int]]:
    """Publishes (topic, key, value, headers); returns where each landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        landed = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in landed]


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await partitions_of(bootstrap, [topic]))
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def read_topic(bootstrap: str, topic: str) -> list[Record]:
    async with TopicReader(bootstrap, topic) as reader:
        return await reader.drain()


async def wait_committed(
    bootstrap: str, group: str, topics: Sequence[str], timeout: float = WAIT_SECONDS
) -> None:
    """Until the group's committed offsets reach the current end of every partition."""
    ends: dict[tuple[str, int], int] = {}
    for topic in topics:
        ends |= {(topic, p): end for p, end in (await end_offsets(bootstrap, topic)).items()}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
            if all(done.get(tp, 0) >= end for tp, end in ends.items()):
                return
            assert time.monotonic() < deadline, f"{group} did not commit up to {ends}: {done}"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def where(landed: tuple[str, int, int]) -> str:
    topic, partition, offset = landed
    return f"{topic}[{partition}]@{offset}"


def dlq_headers(
    original: tuple[str, int, int], reason: str, at: datetime, detail: str = ""
) -> Headers:
    """The dlq_* headers the service puts on a dead letter, dead-lettered at `at`."""
    topic, partition, offset = original
    return [
        (messages.DLQ_TOPIC, topic.encode()),
        (messages.DLQ_PARTITION, str(partition).encode()),
        (messages.DLQ_OFFSET, str(offset).encode()),
        (messages.DLQ_REASON, reason.encode()),
        (messages.DLQ_DETAIL, detail.encode()),
        (messages.DLQ_AT, at.isoformat().encode()),
    ]


async def test_list_shows_the_real_dead_letters_and_filters(
    flow: Flow, infra: Infra, topics: Topics, service_env: dict[str, str]
) -> None:
    balance_t, settings_t = topics["WALLET_BALANCE_CHANGED"], topics["SETTINGS_UPDATED"]
    dlq_t = topics["AUTO_TOPUP_DEAD_LETTER"]
    c1, c2, c3, c4 = (customer_id().encode() for _ in range(4))
    now = flow.now()
    bad_json = b'{"customer_id": "[bold red]x[/]", oops'  # rich markup, shown as it is
    not_utf8 = b'\xff\xfe{"balance": "1.00"}'
    landed = await send(
        infra.kafka,
        [
            (balance_t, c1, bad_json, [("trace-id", b"t-1")]),
            (balance_t, c2 + b"-other", dumps(balance_wire(c2.decode(), "5.00", at=now)), []),
            (
                settings_t,
                c3,
                dumps(settings_wire(c3.decode(), timezone="Mars/Olympus", at=now)),
                [],
            ),
            (balance_t, c4, not_utf8, []),
        ],
    )
    reasons = ["invalid_json", "key_mismatch", "invalid_timezone", "invalid_encoding"]
    # A foreign record in the dead-letter topic (no dlq_* headers), with a terminal escape.
    await send(infra.kafka, [(dlq_t, b"foreign", b"not ours \x1b[31mred\n", [("x", b"y")])])
    await flow.reader.wait_for(
        lambda rs: len([r for r in rs if r.topic == dlq_t]) == 5, what="4 dead letters + 1"
    )
    dead_letters = {(r.partition, r.offset) for r in flow.reader.on(dlq_t)}

    listed, filtered, as_json, limited = await asyncio.gather(
        dlq_cli(service_env, "list"),
        dlq_cli(service_env, "list", "--reason", "invalid_timezone"),
        dlq_cli(service_env, "list", "--json"),
        dlq_cli(service_env, "list", "--json", "--limit", "2"),
    )

    assert listed.code == 0, listed.err
    table = [row for row in listed.rows() if len(row) == 7]
    counts = {row[0]: int(row[1]) for row in listed.rows() if len(row) == 2}
    assert len(table) == 5
    for reason, original in zip(reasons, landed, strict=True):
        (row,) = [row for row in table if row[3] == where(original)]
        assert row[2] == reason
    (foreign,) = [row for row in table if row[3] == "-"]
    assert foreign[2] == "unknown"
    assert foreign[6] == "not ours \\x1b[31mred\\n"  # escaped: no raw control characters
    assert "\x1b" not in listed.out
    assert any("[bold red]x[/]" in row[6] for row in table)
    assert {row[0] for row in table} == {f"{p}@{o}" for p, o in dead_letters}
    assert counts == {**Counter(reasons), "unknown": 1}
    assert listed.out.rstrip().endswith("5 dead letters")

    assert filtered.code == 0, filtered.err
    assert [row[3] for row in filtered.rows() if len(row) == 7] == [where(landed[2])]
    assert {row[0]: row[1] for row in filtered.rows() if len(row) == 2} == {"invalid_timezone": "1"}
    assert where(landed[0]) not in filtered.out

    assert as_json.code == 0, as_json.err
    objects = as_json.json_lines()
    assert {
        (o["reason"], o["original_topic"], o["original_partition"], o["original_offset"])
        for o in objects
    } == {(r, *original) for r, original in zip(reasons, landed, strict=True)} | {
        ("unknown", None, None, None)
    }
    assert {(o["partition"], o["offset"]) for o in objects} == dead_letters
    by_reason = {o["reason"]: o for o in objects}
    assert by_reason["invalid_json"]["value"] == bad_json.decode()
    assert by_reason["invalid_json"]["headers"] == [
        {"name": "trace-id", "value": "t-1", "encoding": "utf-8"}
    ]
    assert by_reason["key_mismatch"]["key"] == (c2 + b"-other").decode()
    assert by_reason["invalid_encoding"]["value_encoding"] == "base64"
    assert base64.b64decode(by_reason["invalid_encoding"]["value"]) == not_utf8
    assert "Mars/Olympus" in by_reason["invalid_timezone"]["detail"]
    assert by_reason["unknown"]["detail"] is None

    assert limited.code == 0, limited.err
    assert len(limited.json_lines()) == 2


async def test_redrive_after_a_fix_publishes_the_original_once_and_is_safe_twice(
    infra: Infra, topics: Topics, service_env: dict[str, str], clock_offset: float
) -> None:
    balance_t, settings_t = topics["WALLET_BALANCE_CHANGED"], topics["SETTINGS_UPDATED"]
    dlq_t = topics["AUTO_TOPUP_DEAD_LETTER"]
    customer, other = customer_id(), customer_id()
    now = service_now(clock_offset)  # the services below run with this offset (service_env)
    future = balance_wire(customer, "1.00", at=now + timedelta(hours=1))
    future_bytes = dumps(future)
    marker = f"marker {uuid.uuid4()}".encode()
    service = ServiceProcess({**service_env, "AUTO_TOPUP_FUTURE_SKEW_SECONDS": "300"})
    service.start()
    try:
        async with TopicReader(infra.kafka, topics["INVOICE_REQUESTED"], dlq_t) as reader:
            settings = settings_wire(customer, threshold="10.00", at=now - timedelta(seconds=5))
            landed = await send(
                infra.kafka,
                [
                    (settings_t, customer.encode(), dumps(settings), []),
                    # after the settings on their partition: once dead-lettered, they are in
                    (settings_t, customer.encode(), marker, []),
                    (balance_t, customer.encode(), future_bytes, [("trace-id", b"redrive-me")]),
                    (
                        balance_t,
                        b"not-" + other.encode(),
                        dumps(balance_wire(other, "1.00", at=now)),
                        [],
                    ),
                ],
            )
            await reader.wait_for(
                lambda rs: (
                    {r.headers.get(messages.DLQ_REASON) for r in rs}
                    >= {b"future_dated", b"invalid_json", b"key_mismatch"}
                ),
                what="the three dead letters",
            )
            assert service.stop() == 0

            balance_end, settings_end = (
                await end_offsets(infra.kafka, balance_t),
                await end_offsets(infra.kafka, settings_t),
            )
            dry = await dlq_cli(service_env, "redrive", "--reason", "future_dated", "--dry-run")
            assert dry.code == 0, dry.err
            assert where(landed[2]) in dry.out
            assert "would redrive: 1" in dry.out
            assert await end_offsets(infra.kafka, balance_t) == balance_end

            # The fix: a larger allowed skew. The dead letter is redriven, unchanged.
            service = ServiceProcess({**service_env, "AUTO_TOPUP_FUTURE_SKEW_SECONDS": "7200"})
            service.start()
            first = await dlq_cli(service_env, "redrive", "--reason", "future_dated")
            assert first.code == 0, first.err
            assert "redriven: 1" in first.out
            (redriven,) = [
                r
                for r in await read_topic(infra.kafka, balance_t)
                if r.offset >= balance_end[r.partition]
            ]
            assert redriven.value == future_bytes
            assert redriven.key == customer.encode()
            # The original headers, and the redrive's mark: where its dead letter was read.
            mark = redriven.headers.pop(messages.REDRIVE)
            assert redriven.headers == {"trace-id": b"redrive-me"}
            assert mark.startswith(f"{topics['AUTO_TOPUP_DEAD_LETTER']}/".encode())
            assert await end_offsets(infra.kafka, settings_t) == settings_end  # nothing else

            await reader.wait_for(
                lambda rs: bool(reader.on(topics["INVOICE_REQUESTED"])), what="the invoice"
            )
            (invoice,) = [r.json() for r in reader.on(topics["INVOICE_REQUESTED"])]
            assert invoice["customer_id"] == customer
            assert invoice["trigger_event_id"] == future["event_id"]

            # Again: published again, byte for byte, and the service decides nothing new.
            second = await dlq_cli(service_env, "redrive", "--reason", "future_dated")
            assert second.code == 0, second.err
            again = [r for r in await read_topic(infra.kafka, balance_t) if r.value == future_bytes]
            assert len(again) == 3  # the original, and two redrives
            group = service_env["AUTO_TOPUP_CONSUMER_GROUP"]
            await wait_committed(infra.kafka, group, [balance_t, settings_t])
            # A marker after it on its partition: once dead-lettered, the relay is past it too.
            flush = f"flush {uuid.uuid4()}".encode()
            await send(infra.kafka, [(balance_t, customer.encode(), flush, [])])
            await reader.wait_for(lambda rs: any(r.value == flush for r in rs), what="flush")
            await reader.drain()
            invoices = [r.json() for r in reader.on(topics["INVOICE_REQUESTED"])]
            assert invoices == [invoice]
            reasons = [r.headers.get(messages.DLQ_REASON) for r in reader.on(dlq_t)]
            assert reasons.count(b"future_dated") == 1  # the redriven ones were accepted
    finally:
        if service.running:
            assert service.stop() == 0, "\n".join(service.lines[-30:])


async def test_redrive_selects_by_reason_and_never_publishes_elsewhere(
    infra: Infra, topics: Topics, service_env: dict[str, str], clock_offset: float
) -> None:
    balance_t, dlq_t = topics["WALLET_BALANCE_CHANGED"], topics["AUTO_TOPUP_DEAD_LETTER"]
    at = service_now(clock_offset)  # when these dead letters were (said to be) dead-lettered
    later = at + timedelta(milliseconds=1)
    elsewhere, missing = f"elsewhere.{topics.suffix}", f"missing.{topics.suffix}"
    await ensure_topics(infra.kafka, [*topics.env().values(), elsewhere], 3)
    original = [("h", b"1")]
    await send(
        infra.kafka,
        [
            (dlq_t, b"k1", b"to elsewhere", dlq_headers((elsewhere, 0, 7), "future_dated", at)),
            (dlq_t, b"k2", b"{bad", dlq_headers((balance_t, 1, 8), "invalid_json", at)),
            (dlq_t, b"k3", b"{}", original + dlq_headers((balance_t, 2, 9), "future_dated", at)),
            # the same one again (a relay that crashed before marking it), dead-lettered a
            # moment later: published once
            (dlq_t, b"k3", b"{}", original + dlq_headers((balance_t, 2, 9), "future_dated", later)),
            (dlq_t, b"foreign", b"x", []),
            (dlq_t, b"k4", b"{}", dlq_headers((missing, 0, 1), "schema_violation", at)),
        ],
    )
    dry, redrive, broken, unreachable = await asyncio.gather(
        dlq_cli(service_env, "redrive", "--dry-run"),
        dlq_cli(service_env, "redrive", "--reason", "future_dated"),
        # an input topic that does not exist: the publish fails, and says which
        dlq_cli(
            {**service_env, "AUTO_TOPUP_TOPIC_SETTINGS_UPDATED": missing},
            "redrive",
            "--reason",
            "schema_violation",
        ),
        dlq_cli({**service_env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "list"),
    )

    assert dry.code == 0, dry.err
    assert "would redrive: 2" in dry.out  # k2 and k3 (once)
    assert "no dlq_original_topic header" in dry.err  # the foreign record
    assert f"original topic {elsewhere} is not an input topic" in dry.err

    assert redrive.code == 0, redrive.err
    assert "redriven: 1" in redrive.out
    assert f"original topic {elsewhere} is not an input topic" in redrive.err
    (published,) = await read_topic(infra.kafka, balance_t)
    mark = published.headers.pop(messages.REDRIVE)
    assert (published.key, published.value, published.headers) == (b"k3", b"{}", {"h": b"1"})
    assert mark.startswith(f"{topics['AUTO_TOPUP_DEAD_LETTER']}/".encode())
    assert await read_topic(infra.kafka, elsewhere) == []

    assert broken.code == 1
    assert f"{missing}: topic {missing} does not exist" in broken.err
    assert "was not redriven" in broken.err

    assert unreachable.code == 1
    assert unreachable.err.startswith("error: cannot reach Kafka at 127.0.0.1:1")
    assert len(unreachable.err.splitlines()) == 1


async def test_redrive_by_offset_publishes_exactly_one_and_never_a_truncated_one(
    infra: Infra, topics: Topics, service_env: dict[str, str], clock_offset: float
) -> None:
    balance_t, dlq_t = topics["WALLET_BALANCE_CHANGED"], topics["AUTO_TOPUP_DEAD_LETTER"]
    at = service_now(clock_offset)
    await ensure_topics(infra.kafka, topics.env().values(), 3)
    cut = [(messages.DLQ_TRUNCATED, b"true"), (messages.DLQ_ORIGINAL_SIZE, b"70000")]
    landed = await send(
        infra.kafka,
        [
            (dlq_t, b"k1", b'{"n": 1}', dlq_headers((balance_t, 0, 10), "future_dated", at)),
            (dlq_t, b"k2", b'{"n": 2}', dlq_headers((balance_t, 0, 11), "future_dated", at)),
            (dlq_t, b"k3", b'{"n": 3', dlq_headers((balance_t, 0, 12), "future_dated", at) + cut),
        ],
    )
    one, two, truncated = (f"{p}@{o}" for _, p, o in landed)

    exact = await dlq_cli(service_env, "redrive", "--offset", two)
    assert exact.code == 0, exact.err
    assert "redriven: 1" in exact.out
    (published,) = await read_topic(infra.kafka, balance_t)
    assert (published.key, published.value) == (b"k2", b'{"n": 2}')

    refused = await dlq_cli(service_env, "redrive", "--offset", truncated)
    assert refused.code == 0, refused.err
    assert "first 64 KiB" in refused.err
    assert "nothing to redrive" in refused.out

    by_customer = await dlq_cli(service_env, "redrive", "--customer", "k1", "--dry-run")
    assert "would redrive: 1" in by_customer.out
    assert one in by_customer.out

    absent = await dlq_cli(service_env, "redrive", "--offset", "0@999999")
    assert absent.code == 1
    assert "no dead letter at 0@999999" in absent.err
    malformed = await dlq_cli(service_env, "list", "--offset", "ten")
    assert malformed.code == 2
    assert "PARTITION@OFFSET" in malformed.err
    # Only the one asked for was ever published.
    assert [r.key for r in await read_topic(infra.kafka, balance_t)] == [b"k2"]
