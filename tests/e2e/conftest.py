from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from tests.conftest import Infra
from tests.factories import balance_wire, dumps, settings_wire
from tests.kafka_tools import Record, TopicReader, produce
from tests.service_process import ServiceProcess, Topics


@pytest.fixture
def topics() -> Topics:
    return Topics()


# The time of day (UTC) that `pinned_offset` puts the service's clock at: far from every
# business-day boundary of the timezones the tests use (UTC midnight, 10 hours away; Asia/Kolkata
# midnight, 18:30 UTC, 8.5 hours away). AUTO_TOPUP_TEST_CLOCK=HH:MM (read by the tests only, never
# by the service) picks another, e.g. 00:30 or 23:30 to prove that a module does not depend on it.
PINNED_TIME = time(10, 0)
PINNED_TIME_ENV = "AUTO_TOPUP_TEST_CLOCK"


def pinned_time() -> time:
    """The time of day (UTC) the service's clock is pinned to: AUTO_TOPUP_TEST_CLOCK, or 10:00."""
    raw = os.environ.get(PINNED_TIME_ENV, "").strip()
    if not raw:
        return PINNED_TIME
    try:
        at = time.fromisoformat(raw)
    except ValueError:
        raise pytest.UsageError(f"{PINNED_TIME_ENV}={raw!r}: expected HH:MM (UTC)") from None
    if at.tzinfo is not None:
        raise pytest.UsageError(f"{PINNED_TIME_ENV}={raw!r}: a UTC time of day, without offset")
    return at


def pinned_instant(host_now: datetime, at: time | None = None) -> datetime:
    """The latest instant at time of day `at` (UTC; default `pinned_time()`) that is not after
    `host_now`: today's, or yesterday's. Never ahead of the host's clock, so that the broker's
    and PostgreSQL's own timestamps never lie in the service's future."""
    today = datetime.combine(host_now.astimezone(UTC).date(), at or pinned_time(), UTC)
    return today if today <= host_now else today - timedelta(days=1)


def pinned_offset(at: time | None = None) -> float:
    """The clock offset (zero or negative, within a day) that makes the service's clock read
    `pinned_instant` now, and run on from there: what a module overrides `clock_offset` with
    so that none of its tests depends on the hour or the date it runs at."""
    host_now = datetime.now(UTC)
    return (pinned_instant(host_now, at) - host_now).total_seconds()


def service_now(clock_offset: float) -> datetime:
    """What the service's clock reads now, for a service started with this offset."""
    return datetime.now(UTC) + timedelta(seconds=clock_offset)


@pytest.fixture
def clock_offset() -> float:
    """Seconds the service's clock runs ahead of the host's (AUTO_TOPUP_CLOCK_OFFSET_SECONDS).

    0 here: these tests date their events with the host's clock (so does the service, whatever
    the caller's environment says). A test module that must not depend on the hour overrides
    this fixture with a negative offset to an instant of its choice (one the host has seen, so
    that the broker's and PostgreSQL's own timestamps never lie in the service's future),
    usually `pinned_offset()`, and dates its events with `flow.now()` (`service_now`
    without a Flow); Flow's helpers do so for the events they date themselves."""
    return 0.0


@pytest.fixture
def service_env(
    infra: Infra, database_url: str, topics: Topics, clock_offset: float
) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": "sk_test_e2e_fake_key",
        "AUTO_TOPUP_CONSUMER_GROUP": f"auto-topup-e2e-{uuid.uuid4().hex[:8]}",
        "AUTO_TOPUP_TOPIC_PARTITIONS": "3",
        "AUTO_TOPUP_LOG_LEVEL": "INFO",
        "AUTO_TOPUP_CLOCK_OFFSET_SECONDS": repr(clock_offset),
        **topics.env(),
    }
    if infra.stripe_api_base:
        env["STRIPE_API_BASE"] = infra.stripe_api_base
    return env


@pytest.fixture
def service(service_env: dict[str, str]) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env)
    proc.start()
    yield proc
    if proc.running:
        assert proc.stop() == 0, "\n".join(proc.lines[-30:])


class Flow:
    """Contract events in, contract events out, for one running service."""

    def __init__(
        self, infra: Infra, topics: Topics, reader: TopicReader, clock_offset: float = 0.0
    ) -> None:
        self.infra = infra
        self.topics = topics
        self.reader = reader
        self.clock_offset = clock_offset

    def now(self) -> datetime:
        """What the service's clock reads now."""
        return service_now(self.clock_offset)

    async def send(self, name: str, body: dict[str, Any] | bytes, key: str) -> None:
        value = body if isinstance(body, bytes) else dumps(body)
        await produce(self.infra.kafka, self.topics[name], [(key.encode(), value)])

    async def settings(self, customer: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("at", self.now() - timedelta(seconds=5))
        body = settings_wire(customer, **fields)
        await self.send("SETTINGS_UPDATED", body, customer)
        return body

    async def balance(self, customer: str, amount: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("at", self.now())
        body = balance_wire(customer, amount, **fields)
        await self.send("WALLET_BALANCE_CHANGED", body, customer)
        return body

    async def flush(self, customer: str) -> None:
        """Waits until everything sent so far for this customer has been processed: a marker
        on each input topic (same key, so same partition, after what came before) has come
        out of the dead-letter topic."""
        markers = []
        for name in ("SETTINGS_UPDATED", "WALLET_BALANCE_CHANGED"):
            marker = f"flush marker {uuid.uuid4()}".encode()
            markers.append(marker)
            await self.send(name, marker, customer)
        await self.reader.wait_for(
            lambda rs: all(any(r.value == m for r in rs) for m in markers),
            what=f"flush markers of {customer}",
        )
        await self.reader.drain()

    def out(self, name: str, customer: str) -> list[dict[str, Any]]:
        return [r.json() for r in self.reader.on(self.topics[name]) if r.key == customer.encode()]

    def dead(self, customer: str) -> list[Record]:
        return [
            r
            for r in self.reader.on(self.topics["AUTO_TOPUP_DEAD_LETTER"])
            if r.key == customer.encode() and not (r.value or b"").startswith(b"flush")
        ]

    async def wait_out(self, name: str, customer: str, count: int = 1) -> list[dict[str, Any]]:
        await self.reader.wait_for(
            lambda rs: len(self.out(name, customer)) >= count, what=f"{count} {name} for {customer}"
        )
        return self.out(name, customer)


@pytest.fixture
async def flow(
    infra: Infra, topics: Topics, service: ServiceProcess, clock_offset: float
) -> AsyncIterator[Flow]:
    names = ("INVOICE_REQUESTED", "CREDIT_ISSUED", "TOP_UP_FAILED", "AUTO_TOPUP_DEAD_LETTER")
    async with TopicReader(infra.kafka, *(topics[n] for n in names)) as reader:
        yield Flow(infra, topics, reader, clock_offset)


def online_top_up(card: tuple[str, str], **fields: object) -> dict[str, object]:
    """Settings fields of a customer's own online top-up with the card saved in Stripe."""
    return {
        "method": "stripe",
        "origin": "online_top_up",
        "stripe_customer_id": card[0],
        "stripe_payment_method_id": card[1],
        **fields,
    }


def customer_id(prefix: str = "cust") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
