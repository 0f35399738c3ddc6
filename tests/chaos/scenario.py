"""A seeded random stream of contract events, in phases whose cross-topic order is fixed.

The two input topics are not ordered with each other, so the stream is cut in phases
(settings; balances; settings changes; balances again; then two more for the tight partners)
and the harness waits for each phase to be consumed before the next starts. Inside a phase,
every customer's events keep their order (one key, one partition), with duplicates, reorders
(stale sequences), malformed and future-dated messages mixed in.

Tight partners. Most partners have an ample balance, so what they can cover never matters.
A few "tight" partners each fund a handful of customers of their own with a balance that
covers only some of their top-ups, and their wallet's balance events name the credits it
applied (`caused_by`), late, out of order, duplicated, or not at all (the partner's own
payment). Which customer of one partner is decided first inside a phase is not fixed (other
partitions; and inside one partition the alignment hold lets other customers' records pass
a waiting one, and a failing batch is split by customer), so the stream never depends on it:

- a partner's balance events and the top-ups it funds are never in the same phase (the
  barrier between phases orders them);
- inside a phase, the customers refused by a partner ask for more than it can cover at the
  phase's start, and those it funds fit together: the same ones are funded in every order.

The reference model checks both and raises `AmbiguousScenario` if either fails. The story of
one tight partner, in units `u` of its own (funded F, refused R, at the phase's start the
partner can cover A):

    phase 1  balance 2.5u (seq 1)                      A = 2.5u
    phase 2  T1 u F, T2 u F, T3 3u R                   A = 2.5u, then 0.5u (T1, T2 reserved)
    phase 3  1.5u (seq 2) names T1, twice; a future-dated one names T2 (dead-lettered: T2
             stays reserved)                           A = 1.5u - u = 0.5u
    phase 4  T4 0.4u F (only because T1 was released), T5 u R (T2 still reserved)
    phase 5  3.1u (seq 5, the partner's payment), then seq 3 (0.5u, names T2) and seq 4
             (0.1u, names T4), both stale but releasing; seq 5 again (a duplicate)
                                                       A = 3.1u
    phase 6  T6 2u F (only because of the releases), T7 4u R; T3 and T5 again (their day is
             taken: nothing)
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from tests.reference.wire import BALANCE, SETTINGS, credit_issued_id

CURRENCIES = (("USD", 2), ("USD", 2), ("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3))
TIMEZONES = ("UTC", "UTC", "Asia/Kolkata", "America/New_York")
# Phases of the stream (the harness waits for each to be consumed before the next).
PHASES = 6
# How far ahead the future-dated messages are: further than the service's skew (5 minutes)
# from the chosen "now" until the end of the run, replay included, however slow the machine.
FUTURE = timedelta(days=1)


@dataclass(frozen=True)
class Msg:
    topic: str  # SETTINGS or BALANCE
    key: str
    value: bytes
    dead_reason: str | None = None  # set when the message must be dead-lettered


@dataclass
class Customer:
    id: str
    method: str
    currency: str
    scale: int
    timezone: str
    partner: str | None = None
    card: str | None = None  # "good" or "declined"


@dataclass
class Scenario:
    seed: int
    now: datetime
    customers: list[Customer]
    partners: list[str]  # every partner, the tight ones too
    phases: list[list[Msg]] = field(default_factory=list)
    # tight partner -> its customers (they fund no one else; no one else funds them)
    tight: dict[str, list[str]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.phases)


def _money(rng: random.Random, low: int, high: int, scale: int) -> str:
    value = Decimal(rng.randint(low * 10**scale, high * 10**scale)).scaleb(-scale)
    return f"{value:f}"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def day_start(at: datetime, timezone: str) -> datetime:
    """The instant at which the business day of `at` began in `timezone`."""
    zone = ZoneInfo(timezone)
    return datetime.combine(at.astimezone(zone).date(), time(0), tzinfo=zone)


class _Builder:
    def __init__(self, seed: int | str, now: datetime, cards: dict[str, tuple[str, str]]) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.cards = cards
        self.version: dict[str, int] = {}
        self.sequence: dict[str, int] = {}
        self.settings: dict[str, dict[str, Any]] = {}

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def settings_msg(self, c: Customer, at: datetime, **changes: Any) -> Msg:
        base = self.settings.get(c.id)
        if base is None:
            base = {
                "customer_id": c.id,
                "origin": "finance_app",
                "payment_method": c.method,
                "auto_trigger": self.rng.random() < 0.85,
                "trigger_amount": _money(self.rng, 50, 500, c.scale),
                "limit_threshold": _money(self.rng, -50, 100, c.scale),
                "currency": c.currency,
                "timezone": c.timezone,
            }
            if c.partner:
                base["partner_id"] = c.partner
            if c.card:
                cus, pm = self.cards[c.card]
                base.update(
                    origin="online_top_up", stripe_customer_id=cus, stripe_payment_method_id=pm
                )
        self.version[c.id] = self.version.get(c.id, 0) + 1
        body = {
            **base,
            **changes,
            "event_id": self.event_id(),
            "occurred_at": _iso(at),
            "version": self.version[c.id],
        }
        self.settings[c.id] = body
        return Msg(SETTINGS, c.id, json.dumps(body).encode())

    def balance_msg(
        self,
        wallet: str,
        amount: str,
        currency: str,
        at: datetime,
        caused_by: str | None = None,
        sequence: int | None = None,
    ) -> Msg:
        """The wallet's next balance (or the one with `sequence`: a wallet service's event
        that comes late, out of order)."""
        if sequence is None:
            sequence = self.sequence[wallet] = self.sequence.get(wallet, 0) + 1
        body: dict[str, Any] = {
            "event_id": self.event_id(),
            "occurred_at": _iso(at),
            "customer_id": wallet,
            "currency": currency,
            "balance": amount,
            "sequence": sequence,
        }
        if caused_by is not None:
            body["caused_by"] = caused_by
        return Msg(BALANCE, wallet, json.dumps(body).encode())

    def malformed(self, topic: str, key: str) -> Msg:
        kind = self.rng.randrange(5)
        if kind == 0:
            return Msg(
                topic, key, b'{"customer_id": "' + key.encode() + b'", "balance": ', "invalid_json"
            )
        if kind == 1:
            return Msg(
                topic,
                key,
                json.dumps({"customer_id": key, "event_id": "x"}).encode(),
                "schema_violation",
            )
        if kind == 2:
            body = {
                "event_id": "e",
                "occurred_at": "2026-01-01T00:00:00",
                "customer_id": key,
                "currency": "USD",
                "balance": "1.00",
            }
            return Msg(topic, key, json.dumps(body).encode(), "schema_violation")
        if kind == 3:
            body = {
                "event_id": "e",
                "occurred_at": _iso(self.now),
                "customer_id": "other-key",
                "currency": "USD",
                "balance": "1.00",
            }
            return Msg(topic, key, json.dumps(body).encode(), "key_mismatch")
        return Msg(topic, key, b"\xff\xfe not utf-8", "invalid_encoding")


def _merge(rng: random.Random, streams: list[list[Msg]]) -> list[Msg]:
    """A uniformly random merge that keeps each stream's own order (a short stream's messages
    land anywhere in a long one, not all at its start)."""
    labels = [i for i, s in enumerate(streams) for _ in s]
    rng.shuffle(labels)
    heads = [iter(s) for s in streams]
    return [next(heads[i]) for i in labels]


def _interleave(rng: random.Random, streams: list[list[Msg]]) -> list[Msg]:
    """A random merge that keeps each stream's own order."""
    out: list[Msg] = []
    live = [list(reversed(s)) for s in streams if s]
    while live:
        i = rng.randrange(len(live))
        out.append(live[i].pop())
        if not live[i]:
            live[i] = live[-1]
            live.pop()
    return out


def generate(
    seed: int,
    customers: int,
    events: int,
    now: datetime,
    cards: dict[str, tuple[str, str]],
    run: str = "",
) -> Scenario:
    """`now` is what the service's clock reads when the run starts (the harness sets it): every
    instant in the stream is built from it, never from the host's clock. `cards` maps
    "good"/"declined" to a saved (stripe_customer_id, payment_method_id); `run` makes the ids
    unique to one run (the same seed and `now` give the same stream)."""
    b = _Builder(seed, now, cards)
    rng = b.rng
    tag = f"{run or seed}"
    partners = [f"partner-{tag}-{i}" for i in range(max(2, customers // 200))]
    unknown_partner = f"partner-{tag}-unknown"
    people: list[Customer] = []
    for i in range(customers):
        currency, scale = rng.choice(CURRENCIES)
        roll = rng.random()
        c = Customer(f"c-{tag}-{i}", "cheque_tt", currency, scale, rng.choice(TIMEZONES))
        if roll < 0.25:
            c.method, c.currency, c.scale = "master_account", "USD", 2
            c.partner = unknown_partner if rng.random() < 0.05 else rng.choice(partners)
        elif roll < 0.40:
            c.method, c.timezone, c.currency, c.scale = "stripe", "UTC", "USD", 2
            c.card = "declined" if rng.random() < 0.2 else "good"
        people.append(c)
    scenario = Scenario(seed, now, people, partners)
    budget = max(events - customers - len(partners), customers)

    # Phase 1: settings, and the partners' own (ample) balances.
    first = [b.settings_msg(c, now - timedelta(days=2)) for c in people]
    first += [b.balance_msg(p, "1000000000.00", "USD", now - timedelta(days=2)) for p in partners]
    first += [b.malformed(SETTINGS, c.id) for c in rng.sample(people, max(1, customers // 100))]
    rng.shuffle(first)
    scenario.phases.append(first)

    # Phase 2: balances. Cheque and master-account customers see the last 30 hours (two or
    # three business days; the oldest one is past the old-day guard). Stripe customers see one
    # business day in this phase, today's or yesterday's: a declined card pauses Stripe
    # top-ups when the charge fails, which happens beside the consumer, so whether a later
    # event of the same phase on another day comes before or after the pause is a race.
    # Phases 3 and 4 then see the pause, or the new card details that lift it.
    per_customer = max(2.0, budget * 0.85 / customers)  # balance events, on average
    streams = []
    for c in people:
        end = now
        if not c.card:
            start = now - timedelta(hours=30)
        elif rng.random() < 0.5:  # today, up to 2 hours of it
            start = max(now - timedelta(hours=2), day_start(now, c.timezone))
        else:  # the last 2 hours of yesterday
            end = day_start(now, c.timezone)
            start = end - timedelta(hours=2)
        stream: list[Msg] = []
        count = max(1, round(rng.uniform(1, 2 * per_customer - 1)))
        for k in range(count):
            at = start + (end - start) * (k + 1) / (count + 1)  # inside [start, end)
            amount = _money(rng, -100, 400, c.scale)
            msg = b.balance_msg(c.id, amount, c.currency, at)
            stream.append(msg)
            roll = rng.random()
            if roll < 0.05:
                stream.append(msg)  # a duplicate
            elif roll < 0.08 and len(stream) >= 2:
                stream[-1], stream[-2] = stream[-2], stream[-1]  # a reorder: one goes stale
            elif roll < 0.09:
                stream.append(b.malformed(BALANCE, c.id))
            elif roll < 0.095:
                body = json.loads(msg.value)
                body.update(
                    event_id=b.event_id(),
                    sequence=body["sequence"] + 1000,
                    occurred_at=_iso(now + FUTURE),
                )
                stream.append(Msg(BALANCE, c.id, json.dumps(body).encode(), "future_dated"))
        streams.append(stream)
    scenario.phases.append(_interleave(rng, streams))

    # Phase 3: settings changes made today.
    third = []
    for c in rng.sample(people, customers // 3):
        at = now - timedelta(minutes=rng.randint(1, 50))
        current = b.settings[c.id]
        roll = rng.random()
        if c.card and roll < 0.3:
            locked = b.settings_msg(
                c, at, origin="finance_app", trigger_amount=_money(rng, 501, 900, c.scale)
            )
            b.settings[c.id] = current  # rejected: what is stored stays
            third.append(Msg(SETTINGS, c.id, locked.value, "stripe_settings_locked"))
        elif roll < 0.6:
            third.append(b.settings_msg(c, at, auto_trigger=not current["auto_trigger"]))
        elif roll < 0.9:
            third.append(b.settings_msg(c, at, limit_threshold=_money(rng, 0, 300, c.scale)))
        else:
            stale = json.loads(json.dumps(current))
            stale.update(
                event_id=b.event_id(),
                version=max(1, stale["version"] - 1),
                auto_trigger=True,
                limit_threshold=_money(rng, 1000, 2000, c.scale),
            )
            third.append(Msg(SETTINGS, c.id, json.dumps(stale).encode()))
    scenario.phases.append(third)

    # Phase 4: more balances today (most days are taken by now).
    streams = []
    for c in rng.sample(people, customers // 2):
        streams.append(
            [
                b.balance_msg(
                    c.id,
                    _money(rng, -200, 100, c.scale),
                    c.currency,
                    now - timedelta(seconds=rng.randint(1, 50)),
                )
            ]
        )
    scenario.phases.append(_interleave(rng, streams))

    # The tight partners, from a random stream of their own (the rest of the scenario is the
    # same with or without them): their messages are merged into phases 1 to 4 anywhere, and
    # phases 5 and 6 are theirs alone.
    tight = _Builder(f"{seed}-tight", now, cards)
    added, team = _tight_partners(tight, now, tag, max(2, customers // 1000))
    for index, streams in enumerate(added):
        if index < len(scenario.phases):
            scenario.phases[index] = _merge(tight.rng, [scenario.phases[index], *streams])
        else:
            scenario.phases.append(_merge(tight.rng, streams))
    for c in team:
        scenario.customers.append(c)
        scenario.tight.setdefault(c.partner or "", []).append(c.id)
    scenario.partners += list(scenario.tight)
    return scenario


# One tight partner's customers: (trigger amount in the partner's units, the phases, counted
# from 0, in which the customer's balance goes low). See the module's docstring.
TIGHT_CUSTOMERS: tuple[tuple[Decimal, tuple[int, ...]], ...] = (
    (Decimal(1), (1,)),
    (Decimal(1), (1,)),
    (Decimal(3), (1, 5)),
    (Decimal("0.4"), (3,)),
    (Decimal(1), (3, 5)),
    (Decimal(2), (5,)),
    (Decimal(4), (5,)),
)
# The tight partner's balance as its wallet service tells it: sequence -> units.
TIGHT_HISTORY = {
    1: Decimal("2.5"),
    2: Decimal("1.5"),
    3: Decimal("0.5"),
    4: Decimal("0.1"),
    5: Decimal("3.1"),
}
LOW, HIGH, THRESHOLD = "5.00", "900.00", "20.00"


def _usd(units: Decimal, u: Decimal) -> str:
    return f"{(units * u).quantize(Decimal('0.01')):f}"


def _partner_balance(
    b: _Builder, partner: str, u: Decimal, n: int, at: datetime, caused_by: str | None = None
) -> Msg:
    """The partner's balance of sequence `n` in its wallet service's history."""
    return b.balance_msg(partner, _usd(TIGHT_HISTORY[n], u), "USD", at, caused_by, n)


def _tight_partners(
    b: _Builder, now: datetime, tag: str, count: int
) -> tuple[list[list[list[Msg]]], list[Customer]]:
    """The tight partners' messages (for each phase, streams whose own order must hold: one
    wallet each) and their customers."""
    rng = b.rng
    phases: list[list[list[Msg]]] = [[] for _ in range(PHASES)]
    customers: list[Customer] = []
    # Every tight customer's balances are dated at one instant: all their decisions fall on
    # one business date, whatever `now` is (a second after midnight included).
    at = now - timedelta(seconds=1)
    for j in range(count):
        partner = f"partner-{tag}-tight-{j}"
        u = Decimal(rng.randint(400, 1200)).scaleb(-1)  # 40.0 to 120.0 USD, one decimal
        credits: list[str] = []
        for k, (units, lows) in enumerate(TIGHT_CUSTOMERS):
            zone = rng.choice(TIMEZONES)
            c = Customer(f"c-{tag}-t{j}-{k}", "master_account", "USD", 2, zone, partner)
            customers.append(c)
            credits.append(credit_issued_id(c.id, at.astimezone(ZoneInfo(zone)).date()))
            settings = b.settings_msg(
                c,
                now - timedelta(days=2),
                auto_trigger=True,
                trigger_amount=_usd(units, u),
                limit_threshold=THRESHOLD,
            )
            phases[0].append([settings])
            # A balance above the threshold first (not due); then the low ones, a duplicate
            # of it in phase 2 (stale: nothing).
            stream = [b.balance_msg(c.id, HIGH, "USD", at)]
            for phase in lows:
                low = b.balance_msg(c.id, LOW, "USD", at)
                if phase == 1:
                    stream += [low, low]
                else:
                    phases[phase].append([low])
            phases[1].append(stream)
        t1, t2, t4 = credits[0], credits[1], credits[3]
        balance = partial(_partner_balance, b, partner, u)
        phases[0].append([balance(1, now - timedelta(days=2))])
        # Phase 3: T1's credit shown as applied (twice); T2's named by an event dated too far
        # ahead, which is dead-lettered and releases nothing.
        seen = balance(2, now - timedelta(hours=1), t1)
        ahead = json.loads(balance(3, now, t2).value)
        ahead.update(sequence=1000, occurred_at=_iso(now + FUTURE))
        future = Msg(BALANCE, partner, json.dumps(ahead).encode(), "future_dated")
        phases[2].append([seen, future, seen])
        # Phase 5: the partner's payment, then the wallet service's late events for T2 and T4
        # (stale by sequence, but they name the credits), and the payment again.
        paid = balance(5, now - timedelta(minutes=10))
        phases[4].append(
            [
                paid,
                balance(3, now - timedelta(minutes=40), t2),
                balance(4, now - timedelta(minutes=30), t4),
                paid,
            ]
        )
    return phases, customers
