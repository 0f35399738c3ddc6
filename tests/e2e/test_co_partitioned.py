"""Order of one customer's settings and balances across instances (contract v2), through the
real broker and database: co-partitioned assignment, the wait for the other topic, and the
start-up check of the input topics' partition counts.

The services' clock is pinned at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), and every
event is dated from it: T - 60 s .. T + 2 s stay on one business day whatever the hour."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from tests.cli_tools import run_cli
from tests.conftest import Infra
from tests.e2e.conftest import Flow, pinned_offset
from tests.factories import balance_wire, dumps, settings_wire
from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS, TopicReader, partitions_of
from tests.pg_tools import connect
from tests.service_process import START_SECONDS, ServiceProcess, Topics

INSTANCES = 4
PARTITIONS = 6
ALIGN_MS = 3000  # the bound, generous: a slow machine must still produce within it
SETTLE_SECONDS = 120.0  # deadline of the waits for a condition below


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK), never at the
    host's hour; every event is dated from it (`flow.now()`)."""
    return pinned_offset()


def _partition(customer: str, partitions: int) -> int:
    """Where the default partitioner (the producers' and ours) puts this customer's events."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(customer.encode(), every, every))


def _one_per_partition(prefix: str, partitions: int) -> list[str]:
    found: dict[int, str] = {}
    while len(found) < partitions:
        customer = f"{prefix}-{uuid.uuid4().hex[:8]}"
        found.setdefault(_partition(customer, partitions), customer)
    return [found[p] for p in range(partitions)]


def _assigned(proc: ServiceProcess) -> set[tuple[str, int]] | None:
    """The partitions this instance logged last as assigned to it."""
    last = None
    for entry in proc.logs():
        message = str(entry.get("msg", ""))
        if message.startswith("partitions assigned: "):
            names = message.removeprefix("partitions assigned: ")
            last = set() if names == "none" else set(names.split(", "))
    if last is None:
        return None
    return {(n[: n.rindex("[")], int(n[n.rindex("[") + 1 : -1])) for n in last}


async def _until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = SETTLE_SECONDS
) -> None:
    """Polls a condition (sync or async) until it holds, or fails."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)  # the poll interval of a condition, with a deadline


def _decided_by(procs: list[ServiceProcess], customer: str) -> set[str]:
    return {
        p.name
        for p in procs
        for e in p.logs()
        if isinstance(e.get("decision"), dict) and e["decision"].get("customer_id") == customer
    }


def _stop(procs: list[ServiceProcess]) -> Iterator[tuple[str, int]]:
    for p in procs:
        if p.running:
            yield p.name, p.stop()


async def test_an_earlier_off_switch_beats_a_due_balance_produced_before_it(
    infra: Infra,
    topics: Topics,
    service_env: dict[str, str],
    database_url: str,
    clock_offset: float,
) -> None:
    env = {
        **service_env,
        "AUTO_TOPUP_TOPIC_PARTITIONS": str(PARTITIONS),
        "AUTO_TOPUP_INPUT_ALIGN_MS": str(ALIGN_MS),
    }
    procs = [ServiceProcess(env, name=f"svc-{i}") for i in range(INSTANCES)]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        inputs = (
            topics["WALLET_BALANCE_CHANGED"],
            topics["SETTINGS_UPDATED"],
            topics["INVOICE_STATUS_CHANGED"],
        )
        every = {(t, n) for t in inputs for n in range(PARTITIONS)}

        def settled() -> bool:
            """The group's last assignment: all partitions, each once, every member some."""
            sets = [_assigned(p) for p in procs]
            if any(not s for s in sets):
                return False
            owned = [tp for s in sets for tp in s or ()]
            return len(owned) == len(set(owned)) and set(owned) == every

        await _until(settled, "the four instances to share the partitions")
        for proc in procs:  # the range assignor: the same partition numbers of both topics
            mine = _assigned(proc) or set()
            numbers = [sorted(n for t, n in mine if t == topic) for topic in inputs]
            assert numbers[0] == numbers[1], (proc.name, mine)

        # One customer of each kind on every partition, so on every instance.
        switched_off = _one_per_partition("off", PARTITIONS)
        control = _one_per_partition("ctl", PARTITIONS)
        names = ("INVOICE_REQUESTED", "CREDIT_ISSUED", "TOP_UP_FAILED", "AUTO_TOPUP_DEAD_LETTER")
        async with TopicReader(infra.kafka, *(topics[n] for n in names)) as reader:
            flow = Flow(infra, topics, reader, clock_offset)
            t = flow.now().replace(microsecond=0) - timedelta(seconds=10)  # T: a moment ago
            for customer in switched_off + control:  # Cheque/TT, auto-trigger on
                await flow.settings(
                    customer,
                    trigger="100.00",
                    threshold="10.00",
                    at=t - timedelta(seconds=60),
                )
            for customer in switched_off + control:
                await flow.flush(customer)

            producer = AIOKafkaProducer(
                bootstrap_servers=infra.kafka,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
            )
            await producer.start()
            try:
                # A due balance dated T + 2 s reaches the broker first ...
                balances = [
                    await producer.send(
                        inputs[0],
                        dumps(balance_wire(c, "5.00", at=t + timedelta(seconds=2))),
                        key=c.encode(),
                    )
                    for c in switched_off + control
                ]
                await asyncio.gather(*balances)
                first_acked = time.monotonic()
                # ... then the admin's off-switch dated T, within the bound.
                offs = [
                    await producer.send(
                        inputs[1],
                        dumps(
                            settings_wire(c, trigger="100.00", threshold="10.00", auto=False, at=t)
                        ),
                        key=c.encode(),
                    )
                    for c in switched_off
                ]
                await asyncio.gather(*offs)
                gap = time.monotonic() - first_acked
            finally:
                await producer.stop()
            assert gap < ALIGN_MS / 1000 / 2, f"precondition: the off-switches took {gap:.2f}s"

            for customer in control:  # the test can fail: the same shape tops up
                await flow.wait_out("INVOICE_REQUESTED", customer)

            conn = await connect(database_url)
            try:

                async def decided() -> bool:
                    """Every balance has come to a decision (whichever)."""
                    rows = await conn.fetch(
                        "SELECT DISTINCT customer_id FROM decision_summary"
                        " WHERE customer_id = ANY($1::text[])",
                        switched_off + control,
                    )
                    return len(rows) == len(switched_off + control)

                await _until(decided, "a decision for every balance")
                decisions = await conn.fetch(
                    "SELECT customer_id, outcome, reason FROM decision_summary"
                    " WHERE customer_id = ANY($1::text[])",
                    switched_off + control,
                )
            finally:
                await conn.close()
            await reader.drain()
            for customer in switched_off:
                assert flow.out("INVOICE_REQUESTED", customer) == [], customer
            outcomes = {r["customer_id"]: (r["outcome"], r["reason"]) for r in decisions}
            assert len(decisions) == len(outcomes), decisions  # one decision each
            assert outcomes == {
                **{c: ("blocked", "auto_trigger_off") for c in switched_off},
                **{c: ("triggered", outcomes[c][1]) for c in control},
            }
            for customer in control:
                (invoice,) = flow.out("INVOICE_REQUESTED", customer)
                assert invoice["balance_at_trigger"] == "5.00"

        # The customers were decided by every instance, each by the owner of its partition.
        deciders = {c: _decided_by(procs, c) for c in switched_off + control}
        assert all(len(d) == 1 for d in deciders.values()), deciders
        assert set().union(*deciders.values()) == {p.name for p in procs}
    finally:
        stopped = dict(_stop(procs))
    assert all(code == 0 for code in stopped.values()), stopped


async def test_refuses_to_start_when_the_input_topics_are_not_co_partitioned(
    infra: Infra, topics: Topics, service_env: dict[str, str]
) -> None:
    balances, settings = topics["WALLET_BALANCE_CHANGED"], topics["SETTINGS_UPDATED"]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=infra.kafka, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        await admin.create_topics([NewTopic(balances, 3, 1), NewTopic(settings, 2, 1)])
    finally:
        await admin.close()

    done = await run_cli({"AUTO_TOPUP_HTTP_PORT": "0", **service_env}, "run", timeout=START_SECONDS)
    lines = done.err.splitlines()
    assert done.code == 3, "\n".join(lines[-30:])
    naming = [line for line in lines if f"{balances} has 3" in line]  # and their counts
    assert len(naming) == 1, "\n".join(lines)
    entry = json.loads(naming[0])
    assert entry["level"] == "critical"
    assert f"{balances} has 3" in entry["msg"]
    assert f"{settings} has 2" in entry["msg"]
    assert "Traceback" not in done.err
    assert not any("auto-topup is consuming" in line for line in lines)


async def test_a_missing_input_topic_is_created_co_partitioned_with_the_other(
    infra: Infra, topics: Topics, service_env: dict[str, str]
) -> None:
    balances, settings = topics["WALLET_BALANCE_CHANGED"], topics["SETTINGS_UPDATED"]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=infra.kafka, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        await admin.create_topics([NewTopic(balances, 4, 1)])
    finally:
        await admin.close()
    proc = ServiceProcess({**service_env, "AUTO_TOPUP_TOPIC_PARTITIONS": "3"})
    proc.start()
    try:
        created = await partitions_of(infra.kafka, [settings])
        assert len(created) == 4
        assert len(await partitions_of(infra.kafka, [topics["INVOICE_REQUESTED"]])) == 3
    finally:
        assert proc.stop() == 0
