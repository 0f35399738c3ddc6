"""Nothing on the way out blocks (contract v2), through the running service, the real broker and
the real database; every fault is made for real on the broker.

- Input records too large for the contract (a gzip-compressed 2 MiB record, a 1,048,000-byte
  one) are dead-lettered as their first 64 KiB, and the outputs behind them all go out, once.
- An output topic deleted while the service runs is re-created; the outputs resume, none lost.
- A record Kafka refuses for good (its topic's max.message.bytes lowered) is set aside, the
  others go out, `auto-topup outbox list` shows it, and `outbox retry` sends it once fixed.
- An input topic deleted and re-created: a new bad record at an offset used before is
  dead-lettered (the outbox used to de-duplicate dead letters on topic/partition/offset).

Event times are a few seconds before the service's clock, which is pinned at 10:00 UTC today or
yesterday (AUTO_TOPUP_TEST_CLOCK): one business day, whatever the hour the tests run at.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from service.contract import messages
from service.contract.codec import MAX_MESSAGE_BYTES
from tests.cli_tools import CliRun, run_cli
from tests.conftest import Infra
from tests.e2e.conftest import Flow, customer_id, pinned_offset
from tests.e2e.test_http import scrape, value
from tests.factories import balance_wire, dumps, settings_wire
from tests.kafka_tools import (
    KAFKA_REQUEST_TIMEOUT_MS,
    WAIT_SECONDS,
    Record,
    TopicReader,
    partitions_of,
    produce,
)
from tests.pg_tools import connect
from tests.service_process import ServiceProcess, Topics

POLL_SECONDS = 0.2  # polling the database, a topic list or /metrics, always with a deadline


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK); every event
    is dated from it (`flow.now()`)."""
    return pinned_offset()


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS}s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


async def outbox_cli(env: dict[str, str], *args: str) -> CliRun:
    return await run_cli(env, "outbox", *args, columns=250)


class Admin:
    def __init__(self, bootstrap: str) -> None:
        self._client = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
        )

    async def __aenter__(self) -> AIOKafkaAdminClient:
        await self._client.start()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()


async def set_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    async with Admin(bootstrap) as admin:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)}
        )
        (response,) = await admin.alter_configs([resource])
        assert all(r[0] == 0 for r in response.resources), response


async def exists(bootstrap: str, topic: str) -> bool:
    async with Admin(bootstrap) as admin:
        return topic in await admin.list_topics()


async def produce_large(
    bootstrap: str, topic: str, key: bytes, value: bytes, *, gzip: bool
) -> None:
    """One record, as a producer that compresses would send it (the broker checks its limit
    on the compressed batch; the client checks max_request_size on the record as it is)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type="gzip" if gzip else None,
        max_request_size=len(value) + 4096,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    await producer.start()
    try:
        await (await producer.send(topic, value=value, key=key))
    finally:
        await producer.stop()


async def due_customers(flow: Flow, prefix: str, n: int) -> list[str]:
    """`n` Cheque/TT customers made due: settings now, balances just after (each a top-up)."""
    now = flow.now()
    customers = [customer_id(prefix) for _ in range(n)]
    settings = [
        (c.encode(), dumps(settings_wire(c, at=now - timedelta(seconds=5)))) for c in customers
    ]
    await produce(flow.infra.kafka, flow.topics["SETTINGS_UPDATED"], settings)
    return customers


def low_balances(flow: Flow, customers: Iterable[str]) -> list[tuple[bytes | None, bytes | None]]:
    """A balance under the threshold for each customer, 2 s before the service's clock."""
    at = flow.now() - timedelta(seconds=2)
    return [(c.encode(), dumps(balance_wire(c, "5.00", at=at))) for c in customers]


def counts_by_event_id(records: Iterable[Record]) -> Counter[str]:
    return Counter(str(r.json()["event_id"]) for r in records)


async def outbox_state(database_url: str) -> tuple[int, int]:
    """(records waiting to be published, records set aside)."""
    conn = await connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE set_aside_at IS NULL) AS waiting,"
            " count(*) FILTER (WHERE set_aside_at IS NOT NULL) AS aside"
            " FROM outbox WHERE published_at IS NULL"
        )
        assert row is not None
        return int(row["waiting"]), int(row["aside"])
    finally:
        await conn.close()


async def test_oversized_inputs_are_dead_lettered_truncated_and_block_nothing(
    flow: Flow, service: ServiceProcess, database_url: str
) -> None:
    kafka, balances = flow.infra.kafka, flow.topics["WALLET_BALANCE_CHANGED"]
    # 2 MiB that gzip shrinks to a few KiB: the broker takes it (it checks the compressed batch)
    compressed = (b'{"event_id": "' + b"0123456789abcdef" * (2 * 1024 * 1024 // 16))[: 2 << 20]
    # Just under the broker's 1 MiB default, uncompressed: the dlq_* headers would push the
    # whole value over it.
    plain = random.Random(7).randbytes(1_048_000)
    big = {f"big-{uuid.uuid4().hex[:8]}".encode(): (compressed, True)}
    big[f"big-{uuid.uuid4().hex[:8]}".encode()] = (plain, False)
    customers: list[str] = []
    for key, (payload, gzip) in big.items():
        batch = await due_customers(flow, "after-big", 100)
        await produce_large(kafka, balances, key, payload, gzip=gzip)
        await produce(kafka, balances, low_balances(flow, batch))
        customers += batch

    invoices = flow.topics["INVOICE_REQUESTED"]
    await flow.reader.wait_for(
        lambda rs: {r.key for r in rs if r.topic == invoices} >= {c.encode() for c in customers},
        what="an invoice request for each of the 200 customers",
    )
    await flow.flush(customers[-1])

    dead = [r for r in flow.reader.on(flow.topics["AUTO_TOPUP_DEAD_LETTER"]) if r.key in big]
    assert sorted(r.key or b"" for r in dead) == sorted(big)  # each once
    for letter in dead:
        assert letter.key is not None
        original = big[letter.key][0]
        assert letter.value == original[:MAX_MESSAGE_BYTES]
        assert letter.headers[messages.DLQ_TRUNCATED] == b"true"
        assert letter.headers[messages.DLQ_ORIGINAL_SIZE] == str(len(original)).encode()
        sha = hashlib.sha256(original).hexdigest().encode()
        assert letter.headers[messages.DLQ_ORIGINAL_SHA256] == sha
        assert letter.headers[messages.DLQ_REASON] == b"message_too_large"
    published = counts_by_event_id(flow.reader.on(invoices))
    assert len(published) == 200
    assert set(published.values()) == {1}, "a record was published twice"
    assert await outbox_state(database_url) == (0, 0)


async def test_a_deleted_output_topic_is_recreated_and_nothing_is_lost(
    infra: Infra, topics: Topics, service: ServiceProcess, database_url: str, clock_offset: float
) -> None:
    invoices, dead = topics["INVOICE_REQUESTED"], topics["AUTO_TOPUP_DEAD_LETTER"]
    async with TopicReader(infra.kafka, invoices, dead) as reader:
        flow = Flow(infra, topics, reader, clock_offset)
        before = await due_customers(flow, "before", 20)
        await produce(infra.kafka, topics["WALLET_BALANCE_CHANGED"], low_balances(flow, before))
        await reader.wait_for(
            lambda rs: len(counts_by_event_id(reader.on(invoices))) == 20,
            what="20 invoice requests before the topic is deleted",
        )
        assert set(counts_by_event_id(reader.on(invoices)).values()) == {1}

    async with Admin(infra.kafka) as admin:
        await admin.delete_topics([invoices])
    await until(lambda: _gone(infra.kafka, invoices), f"{invoices} deleted")

    async with TopicReader(infra.kafka, dead) as dead_reader:
        flow = Flow(infra, topics, dead_reader, clock_offset)
        after = await due_customers(flow, "after", 20)
        await produce(infra.kafka, topics["WALLET_BALANCE_CHANGED"], low_balances(flow, after))
        # The relay's sends fail as for a topic that is gone: it re-creates it, and sends.
        await until(lambda: exists(infra.kafka, invoices), f"{invoices} re-created")
        await flow.flush(after[-1])
    await until(lambda: _partitions_known(infra.kafka, invoices), f"{invoices} described")
    async with TopicReader(infra.kafka, invoices) as reader:
        await reader.wait_for(
            lambda rs: len(counts_by_event_id(rs)) >= 20,
            what="the 20 invoice requests made after the deletion",
        )
        await until(lambda: _drained(database_url), "an empty outbox")
        await reader.drain()
        recreated = reader.on(invoices)
    # Each of the 20 published into the re-created topic, once; the 20 before were published
    # before the deletion (above), once each.
    assert sorted(r.json()["customer_id"] for r in recreated) == sorted(after)
    assert set(counts_by_event_id(recreated).values()) == {1}
    assert await outbox_state(database_url) == (0, 0)
    service.wait_for_log("re-created topic")


async def _gone(bootstrap: str, topic: str) -> bool:
    return not await exists(bootstrap, topic)


async def _partitions_known(bootstrap: str, topic: str) -> bool:
    try:
        await partitions_of(bootstrap, [topic])
    except LookupError:
        return False
    return True


async def _drained(database_url: str) -> bool:
    return (await outbox_state(database_url))[0] == 0


async def test_a_record_kafka_refuses_is_set_aside_reported_and_retried(
    flow: Flow, service: ServiceProcess, service_env: dict[str, str], database_url: str
) -> None:
    kafka, dead_topic = flow.infra.kafka, flow.topics["AUTO_TOPUP_DEAD_LETTER"]
    # The fault: the dead-letter topic takes no record over 4 KiB (compressed) any more.
    await set_max_message_bytes(kafka, dead_topic, 4096)
    refused_key = f"refused-{uuid.uuid4().hex[:8]}"
    refused_value = b"{" + random.Random(11).randbytes(20_000)  # gzip cannot shrink it
    small = [(f"small-{i}-{uuid.uuid4().hex[:6]}".encode(), b"{not json") for i in range(5)]
    customers = await due_customers(flow, "behind", 30)
    await produce(
        kafka,
        flow.topics["WALLET_BALANCE_CHANGED"],
        [(refused_key.encode(), refused_value), *small, *low_balances(flow, customers)],
    )

    invoices = flow.topics["INVOICE_REQUESTED"]
    await flow.reader.wait_for(
        lambda rs: (
            len(counts_by_event_id(flow.reader.on(invoices))) == 30
            and {k for k, _ in small} <= {r.key for r in rs if r.topic == dead_topic}
        ),
        what="the 30 invoice requests and the small dead letters behind the refused one",
    )

    async def listed() -> list[dict[str, Any]]:
        run = await outbox_cli(service_env, "list", "--json")
        assert run.code == 0, run.err
        return [json.loads(line) for line in run.out.splitlines()]

    async def set_aside() -> bool:
        return any(r["state"] == "set_aside" for r in await listed())

    await until(set_aside, "the refused dead letter set aside")
    (row,) = await listed()
    assert (row["topic"], row["key"], row["state"]) == (dead_topic, refused_key, "set_aside")
    assert "MessageSizeTooLarge" in row["last_error"], row
    assert row["dedupe_key"].startswith(f"dlq/{flow.topics['WALLET_BALANCE_CHANGED']}/")
    table = await outbox_cli(service_env, "list")
    assert table.code == 0, table.err
    assert str(row["id"]) in table.out
    assert "set_aside" in table.out
    assert refused_key in table.out

    port = service.http_port

    async def gauge(expected: float) -> bool:
        return value(await scrape(port), "auto_topup_outbox_set_aside") == expected

    await until(lambda: gauge(1), "auto_topup_outbox_set_aside 1")

    # Usage: exit 2; a record that is not there: exit 1. Nothing changes.
    assert (await outbox_cli(service_env, "retry")).code == 2
    assert (await outbox_cli(service_env, "retry", str(row["id"]), "--all")).code == 2
    assert (await outbox_cli(service_env, "retry", "not-a-number")).code == 2
    missing = await outbox_cli(service_env, "retry", str(row["id"] + 100_000))
    assert missing.code == 1, missing
    assert await outbox_state(database_url) == (0, 1)

    # Fixed: the operator sends it again; the running relay publishes it, once.
    await set_max_message_bytes(kafka, dead_topic, 1024 * 1024)
    retried = await outbox_cli(service_env, "retry", str(row["id"]))
    assert retried.code == 0, retried.err
    assert f"retrying 1 record: {row['id']}" in retried.out
    await flow.reader.wait_for(
        lambda rs: any(r.key == refused_key.encode() for r in rs),
        what="the dead letter once retried",
    )
    await flow.flush(customers[0])
    letters = [r for r in flow.reader.on(dead_topic) if r.key == refused_key.encode()]
    assert [r.value for r in letters] == [refused_value]
    assert Counter(r.key for r in flow.reader.on(dead_topic) if r.key in dict(small)) == {
        k: 1 for k, _ in small
    }
    assert set(counts_by_event_id(flow.reader.on(invoices)).values()) == {1}
    await until(lambda: gauge(0), "auto_topup_outbox_set_aside 0")
    assert await listed() == []
    nothing = await outbox_cli(service_env, "retry", "--all")
    assert (nothing.code, nothing.out.strip()) == (0, "nothing is set aside: nothing to retry")


async def test_a_bad_record_at_an_offset_used_before_the_topic_was_recreated_is_dead_lettered(
    flow: Flow, service: ServiceProcess, database_url: str
) -> None:
    kafka, balances = flow.infra.kafka, flow.topics["WALLET_BALANCE_CHANGED"]
    key = customer_id("reused")
    first = b'{"event_id": "first", "balance": '
    await flow.send("WALLET_BALANCE_CHANGED", first, key)
    await flow.reader.wait_for(lambda rs: len(flow.dead(key)) == 1, what="the first dead letter")
    (old,) = flow.dead(key)

    # The input topic is deleted and created again (as an operator would, to empty it), with
    # the partitions it had; the service meanwhile is stopped.
    assert service.stop() == 0
    (described,) = await _describe(kafka, balances)
    async with Admin(kafka) as admin:
        await admin.delete_topics([balances])
    await until(lambda: _gone(kafka, balances), f"{balances} deleted")
    async with Admin(kafka) as admin:
        await admin.create_topics([NewTopic(balances, len(described["partitions"]), 1)])
    await until(lambda: _partitions_known(kafka, balances), f"{balances} re-created")
    service.start()

    second = b'{"event_id": "second", "balance": '
    await flow.send("WALLET_BALANCE_CHANGED", second, key)
    await flow.reader.wait_for(lambda rs: len(flow.dead(key)) == 2, what="the second dead letter")
    new = flow.dead(key)[1]
    where = (messages.DLQ_TOPIC, messages.DLQ_PARTITION, messages.DLQ_OFFSET)
    assert [new.headers[h] for h in where] == [old.headers[h] for h in where]  # reused offset
    assert (old.value, new.value) == (first, second)
    await flow.flush(key)
    assert len(flow.dead(key)) == 2


async def _describe(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    async with Admin(bootstrap) as admin:
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
    return described
