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
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.chaos.private_stripe import PrivateStripe
from tests.chaos.scenario import Msg, Scenario, generate
from tests.chaos.stripe_proxy import IdempotentStripe
from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS, TopicReader, partitions_of
from tests.pg_tools import PG_QUERY_SECONDS, connect
from tests.reference.compare import compare
from tests.reference.contract import CREDIT_HOLD, Reference
from tests.service_process import START_SECONDS, ServiceProcess, Topics
from tests.stripe_tools import DECLINED_ON_CHARGE, GOOD, saved_card

log = logging.getLogger("chaos")
STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.sh"
OUTPUTS = ("INVOICE_REQUESTED", "CREDIT_ISSUED", "TOP_UP_FAILED")

# What the service's clock reads when a run starts, unless the caller pins another instant:
# a fixed noon (UTC), far from every business-day boundary of the scenario's timezones, so
# that no run depends on the hour or the date it is started at.
DEFAULT_NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

# Waits. Each one waits for a condition; these bound the ones that do not grow with the work.
# (PostgreSQL's are tests/pg_tools.py's: PG_CONNECT_SECONDS, PG_QUERY_SECONDS.)
STACK_SECONDS = 600.0  # one `stack.sh restart-*` (its own deadlines: 30 s stop, 90 s start)
POLL_SECONDS = 0.5  # how often a barrier looks again


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
    # A barrier waits as long as the work left goes down, and gives up after this long
    # without progress (a broker restart, a rebalance and a slow machine fit well inside).
    stall_seconds: float = 300.0
    # What the service's clock reads when the run starts: the scenario's instants are built
    # from it and the service processes get the matching AUTO_TOPUP_CLOCK_OFFSET_SECONDS.
    now: datetime = DEFAULT_NOW


@dataclass
class Result:
    events: int = 0
    kills: int = 0
    restarts: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)  # each daily key counted, described
    dead_expected: int = 0
    dead_missing: int = 0
    dead_unexpected: int = 0
    clean_exits: int = 0
    unclean_exits: int = 0
    # What the reference model decided with: to check that a run covered what it should.
    reference_stats: Counter[str] = field(default_factory=Counter)
    business_dates: set[date] = field(default_factory=set)
    stripe_creates: int = 0  # PaymentIntents created at Stripe (declined ones too)

    @property
    def ok(self) -> bool:
        return (
            all(
                self.counts.get(k, 1) == 0
                for k in ("lost", "doubled", "double_charges", "divergent")
            )
            and self.dead_missing == 0
            and self.unclean_exits == 0
            and not self.uncovered()
        )

    def uncovered(self) -> list[str]:
        """What the run was meant to show about partner reservations and did not (a run in
        which no partner refuses or releases anything proves nothing about them)."""
        wanted = {
            "a partner_insufficient_funds refusal published": self.counts.get(
                "partner_insufficient_funds", 0
            ),
            "a partner balance event with caused_by": self.reference_stats[
                "partner_balance_caused_by"
            ],
            "a partner balance event without caused_by": self.reference_stats[
                "partner_balance_plain"
            ],
            "a credit released by a stale partner balance event": self.reference_stats[
                "partner_released_by_stale"
            ],
            "a top-up funded only because a credit was released": self.reference_stats[
                "partner_funded_after_release"
            ],
        }
        return [what for what, count in wanted.items() if count < 1]

    def line(self) -> str:
        c, r = self.counts, self.reference_stats
        return (
            f"lost={c['lost']} doubled={c['doubled']} double_charges={c['double_charges']} "
            f"divergent={c['divergent']} dead_lettered={c['dead_lettered']} "
            f"partner_events_caused_by={r['partner_balance_caused_by']} "
            f"partner_events_plain={r['partner_balance_plain']} "
            f"partner_insufficient_funds={c.get('partner_insufficient_funds', 0)} "
            f"funded_after_release={r['partner_funded_after_release']}"
        )


def _db_url(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def _stack(command: str) -> None:
    done = subprocess.run(
        ["bash", str(STACK), command], capture_output=True, text=True, timeout=STACK_SECONDS
    )
    if done.returncode != 0:
        raise RuntimeError(f"stack.sh {command} exited {done.returncode}:\n{done.stderr[-4000:]}")


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
        self.clock_offset = 0.0  # seconds the services' clock runs ahead of the host's

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
            # The rules the reference model assumes, whatever the caller's environment says.
            "AUTO_TOPUP_CLOCK_OFFSET_SECONDS": repr(self.clock_offset),
            "AUTO_TOPUP_DEFAULT_TIMEZONE": "UTC",
            "AUTO_TOPUP_FUTURE_SKEW_SECONDS": "300",
            "AUTO_TOPUP_OLD_DAY_WINDOW_DAYS": "1",
            "AUTO_TOPUP_PARTNER_CREDIT_HOLD_SECONDS": str(int(CREDIT_HOLD.total_seconds())),
            **self.topics.env(),
        }

    async def _admin_sql(self, sql: str) -> None:
        conn = await connect(_db_url(self.cfg.database_url, "postgres"))
        try:
            await conn.execute(sql, timeout=PG_QUERY_SECONDS)
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
            except TimeoutError:  # pacing the kills, not waiting for a condition
                pass
            victim = self.rng.choice(self.instances)
            victim.kill()
            self.result.kills += 1
            await asyncio.to_thread(victim.start, START_SECONDS)
            if self.result.kills >= self.cfg.min_kills:
                self._enough_kills.set()

    async def barrier(self, group: str) -> None:
        """Until the group has committed every input record and nothing waits in the outbox
        or at Stripe. It waits as long as what is left goes down (however slow the machine),
        and fails after `stall_seconds` without progress."""
        stall = self.cfg.stall_seconds
        inputs = await partitions_of(
            self.cfg.kafka, [self.topics["WALLET_BALANCE_CHANGED"], self.topics["SETTINGS_UPDATED"]]
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.cfg.kafka, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
        )
        await consumer.start()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.cfg.kafka, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
        )
        await admin.start()
        fewest: int | None = None
        progress_at = time.monotonic()
        try:
            while True:
                try:
                    ends = await consumer.end_offsets(inputs)
                    done = await admin.list_consumer_group_offsets(group)
                    behind = sum(
                        max(0, ends[tp] - (done[tp].offset if tp in done else 0)) for tp in inputs
                    )
                    left: int | None = behind + await self._pending()
                except Exception as exc:  # the broker or the database is restarting
                    log.info("barrier: %s", exc)
                    left = None
                if left == 0:
                    return
                if left is not None and (fewest is None or left < fewest):
                    fewest, progress_at = left, time.monotonic()
                elif time.monotonic() - progress_at > stall:
                    raise TimeoutError(
                        f"group {group} made no progress for {stall}s "
                        f"({fewest} input records, outbox rows and charges still left)"
                    )
                await asyncio.sleep(POLL_SECONDS)  # polling a condition (see above)
        finally:
            await admin.close()
            await consumer.stop()

    async def _pending(self) -> int:
        conn = await connect(_db_url(self.cfg.database_url, self.database))
        try:
            return int(
                await conn.fetchval(
                    "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
                    " + (SELECT count(*) FROM daily_keys WHERE phase <> 'done')",
                    timeout=PG_QUERY_SECONDS,
                )
            )
        finally:
            await conn.close()

    # --- the run ----------------------------------------------------------------------------

    async def execute(self) -> Result:
        started = time.monotonic()
        cfg = self.cfg
        if cfg.now.tzinfo is None:
            raise ValueError("Config.now must be timezone-aware")
        # The services' clock reads cfg.now now, and runs on from there.
        self.clock_offset = (cfg.now - datetime.now(UTC)).total_seconds()
        if self.clock_offset > 0:
            # Runs are made at instants the host has already seen (a chosen noon, 00:30 or
            # 23:30 of an earlier day): the broker's and PostgreSQL's own timestamps, which
            # the service never decides with, then never lie in the service's past.
            raise ValueError(f"Config.now {cfg.now.isoformat()} is ahead of the host's clock")
        await self._admin_sql(f'CREATE DATABASE "{self.database}"')
        stripe = PrivateStripe()
        stripe_base = await asyncio.to_thread(stripe.start)
        proxy = IdempotentStripe(stripe_base)
        stripe_url = await proxy.start()
        try:
            good = await asyncio.to_thread(saved_card, stripe_base, GOOD)
            bad = await asyncio.to_thread(saved_card, stripe_base, DECLINED_ON_CHARGE)
            scenario: Scenario = generate(
                cfg.seed,
                cfg.customers,
                cfg.events,
                cfg.now,
                {"good": good, "declined": bad},
                run=self.run,
            )
            reference = Reference(scenario, {bad[1]}, cfg.now)
            self.result.reference_stats = reference.stats
            self.result.business_dates = reference.business_dates
            self.result.events = scenario.size
            env = self.env(self.group, stripe_url)
            self.instances = [ServiceProcess(env, f"svc{i}") for i in range(cfg.instances)]
            await asyncio.gather(*(asyncio.to_thread(p.start) for p in self.instances))
            producer = AIOKafkaProducer(
                bootstrap_servers=cfg.kafka,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
            )
            await producer.start()
            killer = asyncio.create_task(self.killer())
            try:
                await self._phases(scenario, producer, killer)
            finally:
                self._killing.set()
                await producer.stop()
            await killer  # raises what stopped the killer, if anything did
            await self.barrier(self.group)
            self._check_the_day_held(reference)
            for proc in self.instances:
                code = await asyncio.to_thread(proc.stop)
                self.result.clean_exits += code == 0
                self.result.unclean_exits += code != 0
            # The replay: a fresh group reads both input topics from offset 0.
            replay = ServiceProcess(self.env(f"{self.group}-replay", stripe_url), "replay")
            self.instances.append(replay)
            await asyncio.to_thread(replay.start)
            await self.barrier(f"{self.group}-replay")
            code = await asyncio.to_thread(replay.stop)
            self.result.clean_exits += code == 0
            self.result.unclean_exits += code != 0
            await self._judge(reference, scenario, proxy)
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

    def _check_the_day_held(self, reference: Reference) -> None:
        """The reference decided the old-day guard with the business dates of `cfg.now`: that
        holds only if every decision was made before the next business-day boundary."""
        clock = datetime.now(UTC) + timedelta(seconds=self.clock_offset)
        if clock >= reference.horizon:
            raise RuntimeError(
                f"the service's clock reached {clock.isoformat()}, past the business-day "
                f"boundary at {reference.horizon.isoformat()}, before the run was done: "
                "pin Config.now further from it"
            )

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
            await self._while_killing(killer, self.barrier(self.group))
        # Each kill waits for its victim to be back (at most START_SECONDS) before the next.
        kills_left = cfg.min_kills - self.result.kills
        if kills_left <= 0:
            return
        await self._while_killing(
            killer,
            asyncio.wait_for(
                self._enough_kills.wait(),
                kills_left * (cfg.kill_every + START_SECONDS) + cfg.stall_seconds,
            ),
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

    async def _judge(
        self, reference: Reference, scenario: Scenario, proxy: IdempotentStripe
    ) -> None:
        names = [*OUTPUTS, "AUTO_TOPUP_DEAD_LETTER"]
        async with TopicReader(self.cfg.kafka, *(self.topics[n] for n in names)) as reader:
            await reader.drain()
        events, kinds = [], []
        for name in OUTPUTS:
            for record in reader.on(self.topics[name]):
                events.append(record.json())
                kinds.append(name.lower().replace("_", "-"))
        self.result.counts = compare(reference, events, kinds, self.result.mismatches)
        # Daily keys refused for want of partner funds (an output published twice counts once).
        self.result.counts["partner_insufficient_funds"] = len(
            {
                (event["customer_id"], event["business_date"])
                for kind, event in zip(kinds, events, strict=True)
                if kind == "top-up-failed" and event.get("reason") == "partner_insufficient_funds"
            }
        )
        # Every PaymentIntent the services made went through the proxy: one daily key with
        # two of them is a customer charged twice.
        self.result.counts["double_charges"] = sum(
            1 for n in proxy.payment_intents.values() if n > 1
        )
        self.result.stripe_creates = sum(proxy.payment_intents.values())
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
            "stripe_payment_intents": result.stripe_creates,
            "business_dates": sorted(d.isoformat() for d in result.business_dates),
            "reference": dict(sorted(result.reference_stats.items())),
            "uncovered": result.uncovered(),
        }
    )
