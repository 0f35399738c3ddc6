"""The chaos run: a seeded stream through several instances while they are killed, the
broker and the database restart, then a replay from offset 0 by a fresh consumer group; what
was published is compared with the reference model."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from service.adapters.kafka.topics import partitions_of
from tests.chaos.private_stripe import PrivateStripe
from tests.chaos.reference import Reference, compare
from tests.chaos.scenario import Msg, Scenario, generate
from tests.chaos.stripe_proxy import IdempotentStripe
from tests.kafka_tools import TopicReader
from tests.service_process import ServiceProcess, Topics
from tests.stripe_tools import DECLINED_ON_CHARGE, GOOD, saved_card

log = logging.getLogger("chaos")
STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.sh"
OUTPUTS = ("INVOICE_REQUESTED", "CREDIT_ISSUED", "TOP_UP_FAILED")


@dataclass
class Config:
    kafka: str
    database_url: str
    seed: int = 7
    customers: int = 300
    events: int = 3000
    instances: int = 2
    kill_every: float = 2.0
    min_kills: int = 3
    balance_phase_seconds: float = 6.0  # how long the big balance phase is spread over
    restart_kafka: bool = False
    restart_postgres: bool = True
    phase_timeout: float = 180.0


@dataclass
class Result:
    events: int = 0
    kills: int = 0
    restarts: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    dead_expected: int = 0
    dead_missing: int = 0
    dead_unexpected: int = 0
    clean_exits: int = 0
    unclean_exits: int = 0

    @property
    def ok(self) -> bool:
        return (
            all(
                self.counts.get(k, 1) == 0
                for k in ("lost", "doubled", "double_charges", "divergent")
            )
            and self.dead_missing == 0
            and self.unclean_exits == 0
        )

    def line(self) -> str:
        c = self.counts
        return (
            f"lost={c['lost']} doubled={c['doubled']} double_charges={c['double_charges']} "
            f"divergent={c['divergent']} dead_lettered={c['dead_lettered']}"
        )


def _db_url(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def _stack(command: str) -> None:
    subprocess.run(["bash", str(STACK), command], check=True, capture_output=True, timeout=120)


class Chaos:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.run = uuid.uuid4().hex[:6]
        self.topics = Topics(suffix=self.run)
        self.group = f"chaos-{self.run}"
        self.database = f"auto_topup_chaos_{self.run}"
        self.result = Result()
        self.rng = random.Random(cfg.seed)
        self.instances: list[ServiceProcess] = []
        self.placed: dict[int, tuple[str, int, int]] = {}  # msg index -> topic, partition, offset
        self._killing = asyncio.Event()
        self._enough_kills = asyncio.Event()
        self.stripe_base = ""

    # --- the pieces -------------------------------------------------------------------------

    def env(self, group: str, stripe: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.cfg.kafka,
            "DATABASE_URL": _db_url(self.cfg.database_url, self.database),
            "STRIPE_API_KEY": "sk_test_chaos_fake",
            "STRIPE_API_BASE": stripe,
            "AUTO_TOPUP_CONSUMER_GROUP": group,
            "AUTO_TOPUP_TOPIC_PARTITIONS": "6",
            "AUTO_TOPUP_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "AUTO_TOPUP_STRIPE_RETRY_MAX_SECONDS": "2",
            "AUTO_TOPUP_LOG_LEVEL": "INFO",
            **self.topics.env(),
        }

    async def _admin_sql(self, sql: str) -> None:
        conn = await asyncpg.connect(_db_url(self.cfg.database_url, "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def produce(
        self,
        producer: AIOKafkaProducer,
        phase: list[Msg],
        offset: int,
        seconds: float,
        pauses: dict[int, str],
    ) -> None:
        chunk = 200
        started = time.monotonic()
        for at in range(0, len(phase), chunk):
            for name in [n for i, n in pauses.items() if at <= i < at + chunk]:
                await self.restart(name)
            part = phase[at : at + chunk]
            futures = [
                await producer.send(self.topics[m.topic], m.value, key=m.key.encode()) for m in part
            ]
            for i, meta in enumerate(await asyncio.gather(*futures)):
                self.placed[offset + at + i] = (meta.topic, meta.partition, meta.offset)
            if seconds:  # pacing a load generator, not waiting for a condition
                ahead = started + seconds * (at + chunk) / len(phase) - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)

    async def restart(self, part: str) -> None:
        log.warning("restarting %s", part)
        await asyncio.to_thread(_stack, f"restart-{part}")
        self.result.restarts.append(part)

    async def killer(self) -> None:
        while not self._killing.is_set():
            try:
                await asyncio.wait_for(self._killing.wait(), self.cfg.kill_every)
                return
            except TimeoutError:
                pass
            victim = self.rng.choice(self.instances)
            victim.kill()
            self.result.kills += 1
            await asyncio.to_thread(victim.start, 180.0)
            if self.result.kills >= self.cfg.min_kills:
                self._enough_kills.set()

    async def barrier(self, group: str, timeout: float) -> None:
        """Until the group has committed every input record and nothing waits in the outbox
        or at Stripe."""
        deadline = time.monotonic() + timeout
        inputs = await partitions_of(
            self.cfg.kafka, [self.topics["WALLET_BALANCE_CHANGED"], self.topics["SETTINGS_UPDATED"]]
        )
        consumer = AIOKafkaConsumer(bootstrap_servers=self.cfg.kafka)
        await consumer.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.cfg.kafka)
        await admin.start()
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"group {group} did not catch up in {timeout}s")
                try:
                    ends = await consumer.end_offsets(inputs)
                    done = await admin.list_consumer_group_offsets(group)
                    behind = sum(
                        max(0, ends[tp] - (done[tp].offset if tp in done else 0)) for tp in inputs
                    )
                    pending = await self._pending()
                except Exception as exc:  # the broker or the database is restarting
                    log.info("barrier: %s", exc)
                    behind, pending = 1, 1
                if behind == 0 and pending == 0:
                    return
                await asyncio.sleep(0.5)  # polling a condition, with a deadline
        finally:
            await admin.close()
            await consumer.stop()

    async def _pending(self) -> int:
        conn = await asyncpg.connect(_db_url(self.cfg.database_url, self.database))
        try:
            return int(
                await conn.fetchval(
                    "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
                    " + (SELECT count(*) FROM daily_keys WHERE phase <> 'done')"
                )
            )
        finally:
            await conn.close()

    async def double_charges(self) -> int:
        per_key: dict[str, int] = {}
        async with httpx.AsyncClient(
            base_url=self.stripe_base, auth=("sk_test_chaos_fake", "")
        ) as client:
            after = None
            while True:
                params: dict[str, Any] = {"limit": 100}
                if after:
                    params["starting_after"] = after
                page = (await client.get("/v1/payment_intents", params=params)).json()
                for intent in page["data"]:
                    key = (intent.get("metadata") or {}).get("daily_key", "")
                    if key.startswith(f"c-{self.run}-"):
                        per_key[key] = per_key.get(key, 0) + 1
                if not page.get("has_more") or not page["data"]:
                    break
                after = page["data"][-1]["id"]
        return sum(1 for n in per_key.values() if n > 1)

    # --- the run ----------------------------------------------------------------------------

    async def execute(self) -> Result:
        started = time.monotonic()
        cfg = self.cfg
        await self._admin_sql(f'CREATE DATABASE "{self.database}"')
        stripe = PrivateStripe()
        self.stripe_base = await asyncio.to_thread(stripe.start)
        proxy = IdempotentStripe(self.stripe_base)
        stripe_url = await proxy.start()
        try:
            good = await asyncio.to_thread(saved_card, self.stripe_base, GOOD)
            bad = await asyncio.to_thread(saved_card, self.stripe_base, DECLINED_ON_CHARGE)
            now = datetime.now(UTC)
            scenario: Scenario = generate(
                cfg.seed,
                cfg.customers,
                cfg.events,
                now,
                {"good": good, "declined": bad},
                run=self.run,
            )
            reference = Reference(scenario, {bad[1]}, now)
            self.result.events = scenario.size
            env = self.env(self.group, stripe_url)
            self.instances = [ServiceProcess(env, f"svc{i}") for i in range(cfg.instances)]
            await asyncio.gather(*(asyncio.to_thread(p.start) for p in self.instances))
            producer = AIOKafkaProducer(
                bootstrap_servers=cfg.kafka,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                request_timeout_ms=60000,
            )
            await producer.start()
            killer = asyncio.create_task(self.killer())
            try:
                await self._phases(scenario, producer, killer)
            finally:
                self._killing.set()
                await producer.stop()
            await killer  # raises what stopped the killer, if anything did
            await self.barrier(self.group, cfg.phase_timeout)
            for proc in self.instances:
                code = await asyncio.to_thread(proc.stop)
                self.result.clean_exits += code == 0
                self.result.unclean_exits += code != 0
            # The replay: a fresh group reads both input topics from offset 0.
            replay = ServiceProcess(self.env(f"{self.group}-replay", stripe_url), "replay")
            self.instances.append(replay)
            await asyncio.to_thread(replay.start)
            await self.barrier(f"{self.group}-replay", cfg.phase_timeout)
            code = await asyncio.to_thread(replay.stop)
            self.result.clean_exits += code == 0
            self.result.unclean_exits += code != 0
            await self._judge(reference, scenario)
        finally:
            await proxy.stop()
            for proc in self.instances:
                if proc.running:
                    proc.kill()
            stripe.stop()
        self.result.wall_seconds = time.monotonic() - started
        if self.result.ok:
            await self._admin_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        return self.result

    async def _phases(
        self, scenario: Scenario, producer: AIOKafkaProducer, killer: asyncio.Task[None]
    ) -> None:
        cfg = self.cfg
        offset = 0
        for index, phase in enumerate(scenario.phases):
            pauses: dict[int, str] = {}
            if index == 1:
                if cfg.restart_kafka:
                    pauses[len(phase) // 3] = "kafka"
                if cfg.restart_postgres:
                    pauses[2 * len(phase) // 3] = "postgres"
            seconds = cfg.balance_phase_seconds if index == 1 else 0.0
            await self.produce(producer, phase, offset, seconds, pauses)
            offset += len(phase)
            await self._while_killing(killer, self.barrier(self.group, cfg.phase_timeout))
        await self._while_killing(
            killer, asyncio.wait_for(self._enough_kills.wait(), cfg.phase_timeout)
        )

    @staticmethod
    async def _while_killing(killer: asyncio.Task[None], step: Awaitable[Any]) -> None:
        """Runs a step, but fails at once if the killer fails (a restart that never came up)."""
        task = asyncio.ensure_future(step)
        await asyncio.wait({task, killer}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            killer.result()  # raises the killer's failure
            raise RuntimeError("the killer stopped early")
        task.result()

    async def _judge(self, reference: Reference, scenario: Scenario) -> None:
        names = [*OUTPUTS, "AUTO_TOPUP_DEAD_LETTER"]
        async with TopicReader(self.cfg.kafka, *(self.topics[n] for n in names)) as reader:
            await reader.drain()
        events, kinds = [], []
        for name in OUTPUTS:
            for record in reader.on(self.topics[name]):
                events.append(record.json())
                kinds.append(name.lower().replace("_", "-"))
        self.result.counts = compare(reference, events, kinds)
        self.result.counts["double_charges"] = await self.double_charges()
        dead_seen = {
            (
                r.headers["dlq_original_topic"].decode(),
                int(r.headers["dlq_original_partition"]),
                int(r.headers["dlq_original_offset"]),
            )
            for r in reader.on(self.topics["AUTO_TOPUP_DEAD_LETTER"])
        }
        messages = [m for phase in scenario.phases for m in phase]
        dead_wanted = {self.placed[i] for i, m in enumerate(messages) if m.dead_reason}
        self.result.counts["dead_lettered"] = len(dead_seen)
        self.result.dead_expected = len(dead_wanted)
        self.result.dead_missing = len(dead_wanted - dead_seen)
        self.result.dead_unexpected = len(dead_seen - dead_wanted)
        self.result.counts["divergent"] += self.result.dead_unexpected


def summary(result: Result) -> str:
    return json.dumps(
        {
            "events": result.events,
            "kills": result.kills,
            "restarts": result.restarts,
            "wall_seconds": round(result.wall_seconds, 1),
            "dead_expected": result.dead_expected,
            "dead_missing": result.dead_missing,
            "dead_unexpected": result.dead_unexpected,
            "clean_exits": result.clean_exits,
            "unclean_exits": result.unclean_exits,
        }
    )
