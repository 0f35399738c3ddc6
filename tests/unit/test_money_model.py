"""A stateful model test of the money rules (Hypothesis `RuleBasedStateMachine`).

The real BatchHandler runs on the in-memory unit of work while Hypothesis interleaves online
top-ups, Finance app changes (method round trips, amounts, timezones, auto-trigger), customer
and partner balance events (with and without `caused_by`, late, repeated, produced in the
other order within one batch), and time passing. An independent model, written here from the
contract and not from the code, checks after every step:

- every claim's amount is what its settings allow (contract v2, "How much": the amount mode,
  `max_amount`, and what is left of `monthly_cap` this month: the month's top-ups never exceed
  the cap); a Stripe claim's, what the latest online top-up before it set;
- a partner's unreleased credits never exceed its last balance when a credit is issued;
- no two attempts of one customer inside one business day (the next attempt's decision is
  dated at or after the end of the previous attempt's day, in the timezone it used);
- nothing is decided under settings with auto-trigger off, or with another method;
- one claim per daily key, one output per daily key and event type;
- a redelivered record changes nothing;
- no invoice is requested while `max_open_invoices` of the customer's invoices are open (no
  `paid` or `void` on `invoice-status-changed` yet);
- the real Charger, against a Stripe simulator that keeps idempotency keys for 24 hours,
  replays a saved 5xx and sometimes charges before answering 500: at most one succeeded
  PaymentIntent per daily key, every PaymentIntent of the amount claimed, no create past the
  24-hour horizon, and no Stripe claim while the card is paused after a hard failure.

`make test` runs MODEL_EXAMPLES (2,000) examples; `make fuzz-money` runs 100,000.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from service.config import Topics
from service.contract import messages
from service.contract.codec import output_event_id
from service.domain import rules
from service.domain.calendar import business_date, day_end
from service.domain.money import card_minor_units
from service.service_layer.charger import Charger
from service.service_layer.handlers import BatchHandler
from service.service_layer.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    TransientChargeError,
)
from service.service_layer.ports import Claim, InputRecord
from tests.charge_fakes import FakeClock, MemoryChargeStore
from tests.factories import balance_wire, dumps, settings_wire
from tests.fakes import FakeDatabase
from tests.reference.amounts import within_bounds

TOPICS = Topics()
POLICY = rules.Policy()
BALANCES, SETTINGS = TOPICS.wallet_balance_changed, TOPICS.settings_updated
INVOICES = TOPICS.invoice_status_changed
CUSTOMERS = ("c0", "c1")
PARTNER = "p0"
# UTC+14 and UTC-12 are 26 hours apart: a move between them can date the next event back into
# the month before.
ZONES = ("UTC", "Pacific/Kiritimati", "America/Los_Angeles", "Asia/Kolkata", "Etc/GMT+12")
TRIGGERS = ("50.00", "60.00", "5000.00")
THRESHOLDS = ("10.00", "0.00", "4000.00")
BALANCE_AMOUNTS = ("-10.00", "5.00", "3999.00", "100000.00")
PARTNER_AMOUNTS = ("0.00", "59.99", "100.00", "250.00")
# How late an event is dated against the service's clock (never in the future).
LATENESS = st.sampled_from([0, 1, 30, 400, 4000])
# Starting instants around the day boundaries of the zones above (and the 00:30 and
# 23:30 UTC), on a fixed date: never the wall clock.
STARTS = [
    datetime(2026, 3, 10, 0, 30, tzinfo=UTC),
    datetime(2026, 3, 10, 9, 55, tzinfo=UTC),
    datetime(2026, 3, 10, 18, 25, tzinfo=UTC),
    datetime(2026, 3, 10, 23, 30, tzinfo=UTC),
    datetime(2026, 11, 1, 6, 50, tzinfo=UTC),  # New York / Los Angeles DST end
    datetime(2026, 11, 30, 11, 30, tzinfo=UTC),  # Nov 29 at UTC-12, Dec 1 at UTC+14
]
# The v2 amount settings (contract v2, "How much"), none of them the v1 behaviour.
AMOUNTS: list[dict[str, str]] = [
    {},
    {"amount_mode": "to_target", "target_balance": "6000.00"},
    {"amount_mode": "cover_gap"},
    {"max_amount": "55.00"},
    {"monthly_cap": "120.00"},
    {"monthly_cap": "100.00"},  # less than two Trigger Amounts of 60.00 or 50.00
    {"amount_mode": "cover_gap", "monthly_cap": "5100.00"},
    {"amount_mode": "to_target", "target_balance": "6000.00", "max_amount": "5500.00"},
]
MODEL_EXAMPLES = int(os.environ.get("AUTO_TOPUP_MODEL_EXAMPLES", "2000"))


@dataclass(frozen=True, slots=True)
class Sent:
    record: InputRecord
    batch: int  # the step that delivered it first
    wallet_id: str
    event_id: str
    at: datetime
    fields: dict[str, Any]


@dataclass(slots=True)
class Decided:
    """The model's view of one claim when it was made."""

    claim: Claim
    at: datetime  # the decision's event time
    timezone: str


@dataclass(slots=True)
class Issued:
    event_id: str
    amount: Decimal
    at: datetime  # the service's clock when it decided


STRIPE_KEY_KEPT = timedelta(hours=24)
OUTCOMES = ("ok", "hard", "temporary", "down", "charged_then_500")


@dataclass(slots=True)
class Intent:
    id: str
    daily_key: str
    amount_minor: int
    status: ChargeStatus
    created_at: datetime
    reason: str | None = None


class StripeSim:
    """Stripe as far as the charger can tell: PaymentIntents with metadata, idempotency keys
    kept 24 hours with their saved answer (a saved 500 is replayed), a Search API. The next
    create's fate is set by the test: ok, a hard decline, a temporary one, Stripe down before
    it (nothing made), or charged and then a 500 (the case that double-charges a careless
    client)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.intents: dict[str, Intent] = {}
        self.keys: dict[str, tuple[datetime, Intent | None]] = {}
        self.creates: list[tuple[datetime, ChargeRequest]] = []
        self.next = "ok"
        self.kept = STRIPE_KEY_KEPT  # how long Stripe keeps an idempotency key
        self.search_lag = timedelta(0)  # how long a new PaymentIntent is not searchable
        self.search_takes = timedelta(0)  # how long a search takes (the clock moves meanwhile)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        now = self.clock()
        self.creates.append((now, request))
        saved = self.keys.get(request.idempotency_key)
        if saved is not None and now - saved[0] < self.kept:
            if saved[1] is None:  # a saved 500
                raise TransientChargeError("APIError (500), replayed for this key")
            return self._result(saved[1])
        fate, self.next = self.next, "ok"
        if fate == "down":
            raise TransientChargeError("connection refused")
        status = ChargeStatus.FAILED if fate in ("hard", "temporary") else ChargeStatus.SUCCEEDED
        reason = {"hard": "card_declined", "temporary": "try_again_later"}.get(fate)
        intent = Intent(
            f"pi_{len(self.intents) + 1}",
            request.metadata["daily_key"],
            request.amount_minor,
            status,
            now,
            reason,
        )
        self.intents[intent.id] = intent
        if fate == "charged_then_500":
            self.keys[request.idempotency_key] = (now, None)
            raise TransientChargeError("APIError (500) after the charge was made")
        self.keys[request.idempotency_key] = (now, intent)
        return self._result(intent)

    @staticmethod
    def _result(intent: Intent) -> ChargeResult:
        if intent.status is ChargeStatus.SUCCEEDED:
            return ChargeResult(ChargeStatus.SUCCEEDED, intent.id)
        return ChargeResult(
            ChargeStatus.FAILED, intent.id, intent.reason, "declined", card_unusable=True
        )

    async def retrieve(self, payment_intent_id: str) -> ChargeResult:
        return self._result(self.intents[payment_intent_id])

    async def find(self, daily_key: str) -> list[ChargeResult]:
        asked = self.clock()
        self.clock.advance(self.search_takes)
        return [
            self._result(i)
            for i in self.intents.values()
            if i.daily_key == daily_key and i.created_at <= asked - self.search_lag
        ]


@dataclass(slots=True)
class Model:
    accepted: dict[str, list[Sent]] = field(default_factory=dict)  # settings, in time order
    partner_balances: dict[int, Sent] = field(default_factory=dict)  # by sequence
    named: set[str] = field(default_factory=set)  # credit ids named by a partner balance
    credits: list[Issued] = field(default_factory=list)
    decided: dict[str, list[Decided]] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)  # customer -> the card that failed
    # Every online top-up not dead-lettered, stale ones too: the card is what the latest by
    # time set, whichever order they arrived in.
    onlines: dict[str, list[Sent]] = field(default_factory=dict)
    # Each customer's requested invoices (invoice-requested event ids), and those closed.
    invoices: dict[str, list[str]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)


class MoneyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = FakeDatabase()
        self.clock = FakeClock(STARTS[0])
        self.handler = BatchHandler(self.db.unit_of_work, self.clock, POLICY, TOPICS)
        self.charges = MemoryChargeStore(self.clock)
        self.stripe = StripeSim(self.clock)
        self.charger = Charger(self.charges, self.stripe, self.clock, TOPICS, concurrency=4)
        self.model = Model()
        self.sent: list[Sent] = []
        self.offsets: Counter[str] = Counter()
        self.steps = 0
        self.seq = 0
        self.ids = 0
        self.last_settings: dict[str, dict[str, Any]] = {}  # the last sent, per customer

    def teardown(self) -> None:
        self.loop.close()

    @property
    def now(self) -> datetime:
        return self.clock.now

    # --- building and delivering records ------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}-{self.ids}"

    def _record(self, topic: str, wallet_id: str, body: dict[str, Any]) -> Sent:
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        record = InputRecord(topic, 0, offset, wallet_id.encode(), dumps(body))
        at = datetime.fromisoformat(body["occurred_at"])
        return Sent(record, self.steps, wallet_id, body["event_id"], at, body)

    def _settings(self, customer: str, lateness: int, **fields: Any) -> Sent:
        at = self.now - timedelta(seconds=lateness)
        body = settings_wire(customer, at=at, event_id=self._id("s"), **fields)
        self.last_settings[customer] = body
        return self._record(SETTINGS, customer, body)

    def _balance(self, wallet_id: str, amount: str, lateness: int, **extra: Any) -> Sent:
        at = self.now - timedelta(seconds=lateness)
        body = balance_wire(wallet_id, amount, at=at, event_id=self._id("b"), **extra)
        return self._record(BALANCES, wallet_id, body)

    def _deliver(self, batch: list[Sent]) -> None:
        self.steps += 1
        claims, outbox = len(self.db.committed.daily_keys), len(self.db.committed.outbox)
        report = self.loop.run_until_complete(self.handler.handle([s.record for s in batch]))
        outcomes = {(e.topic, e.partition, e.offset): e.outcome for e in report.log}
        after = self.db.committed
        self._learn(batch, outcomes)
        new_claims = after.daily_keys[claims:]
        for claim in new_claims:
            self._check_claim(batch, claim)
            if claim.phase == "claimed":  # a Stripe charge: the charger's from here
                self.charges.claim(claim.topup)
        self._check_new_credits(after.outbox[outbox:])
        self.sent.extend(batch)

    def _learn(self, batch: list[Sent], outcomes: dict[tuple[str, int, int], str]) -> None:
        """What the model takes from the service: whether each settings record was accepted
        (dead-lettered and stale ones are not), and what the partner's balances said."""
        for s in sorted(batch, key=lambda s: (s.at, s.record.topic != SETTINGS)):
            where = (s.record.topic, s.record.partition, s.record.offset)
            outcome = outcomes.get(where, "applied")
            if s.fields.get("origin") == "online_top_up" and outcome != "dead_lettered":
                self.model.onlines.setdefault(s.wallet_id, []).append(s)
            if s.record.topic == SETTINGS and outcome not in ("dead_lettered", "stale"):
                if s.fields["origin"] == "online_top_up":
                    self.model.paused.pop(s.wallet_id, None)  # new card details
                history = self.model.accepted.setdefault(s.wallet_id, [])
                assert not history or history[-1].at <= s.at, "accepted an older settings record"
                history.append(s)
            if s.record.topic == BALANCES and s.wallet_id == PARTNER:
                self.model.partner_balances[s.fields["sequence"]] = s
                if s.fields.get("caused_by"):
                    self.model.named.add(s.fields["caused_by"])

    # --- the checks ------------------------------------------------------------------------------

    def _effective(self, customer: str, trigger: Sent) -> Sent:
        """The settings the service applied the trigger under: those delivered earlier, and
        those of the same batch dated at or before it (event-time order, settings first)."""
        history = self.model.accepted.get(customer, [])
        candidates = [
            s
            for s in history
            if s.batch < trigger.batch or (s.batch == trigger.batch and s.at <= trigger.at)
        ]
        assert candidates, f"a top-up for {customer} without accepted settings"
        return candidates[-1]

    def _check_claim(self, batch: list[Sent], claim: Claim) -> None:
        topup = claim.topup
        trigger = next(s for s in batch if s.event_id == topup.trigger_event_id)
        current = self._effective(topup.customer_id, trigger)
        f = current.fields
        # Nothing decided under auto-trigger off, or under another method than the settings'.
        assert f["auto_trigger"] is True, f"top-up under auto-trigger off: {claim}"
        assert topup.payment_method.value == f["payment_method"], claim
        at = max(trigger.at, current.at)
        timezone = f.get("timezone") or POLICY.default_timezone
        assert topup.business_date == business_date(at, timezone), (claim, at, timezone)
        amounts = f
        if topup.payment_method.value == "stripe":
            # The card is charged only what its owner set in the latest online top-up.
            online = [
                s
                for s in self.model.onlines.get(topup.customer_id, [])
                if s.batch < trigger.batch or (s.batch == trigger.batch and s.at <= trigger.at)
            ]
            assert online, f"a Stripe charge without an online top-up: {claim}"
            latest = max(online, key=lambda s: (s.at, s.event_id))
            amounts = latest.fields
            assert topup.card is not None
            assert topup.card.stripe_payment_method_id == latest.fields["stripe_payment_method_id"]
            assert topup.customer_id not in self.model.paused, f"charge on a paused card: {claim}"
        # How much: the mode, max_amount, and what is left of the month's cap.
        assert topup.limit_threshold == Decimal(amounts["limit_threshold"]), claim
        wrong = within_bounds(
            topup.amount,
            amounts,
            topup.balance_at_trigger,
            topup.limit_threshold,
            self._spent(topup.customer_id, topup.business_date.isoformat()[:7]),
        )
        assert wrong is None, f"{wrong}: {claim}"
        # No two attempts inside one business day, whatever the timezones.
        decided = self.model.decided.setdefault(topup.customer_id, [])
        for earlier in decided:
            end = day_end(earlier.claim.topup.business_date, earlier.timezone)
            assert at >= end, (
                f"second attempt at {at} before the end ({end}) of the business day of "
                f"{earlier.claim.topup.business_date} in {earlier.timezone}"
            )
        decided.append(Decided(claim, at, timezone))
        if claim.result == "invoice_requested":
            self._check_invoice(topup, f)

    def _check_invoice(self, topup: Any, settings: dict[str, Any]) -> None:
        """No invoice while max_open_invoices of the customer's are open; then it is open."""
        requested = self.model.invoices.setdefault(topup.customer_id, [])
        limit = settings.get("max_open_invoices")
        still_open = [i for i in requested if i not in self.model.closed]
        assert limit is None or len(still_open) < limit, (
            f"an invoice requested while {len(still_open)} are open (max {limit}): {topup}"
        )
        kind = messages.INVOICE_REQUESTED
        if topup.payment_method.value != "cheque_tt":  # a fallback step's invoice
            kind = f"{kind}|cheque_tt"
        requested.append(output_event_id(topup.customer_id, topup.business_date, kind))

    def _spent(self, customer: str, month: str) -> Decimal:
        """The month's top-ups so far: invoices requested and credits issued, and card charges
        not (yet) failed."""
        total = Decimal(0)
        for earlier in self.model.decided.get(customer, []):
            topup = earlier.claim.topup
            if topup.business_date.isoformat()[:7] != month or earlier.claim.result == "failed":
                continue
            row = self.charges.rows.get(topup.idempotency_key)
            if row is not None and row.result == "failed":
                continue
            total += topup.amount
        return total

    def _last_partner_balance(self) -> Decimal | None:
        if not self.model.partner_balances:
            return None
        return Decimal(
            self.model.partner_balances[max(self.model.partner_balances)].fields["balance"]
        )

    def _check_new_credits(self, new_rows: list[Any]) -> None:
        for row in new_rows:
            if row.topic != TOPICS.credit_issued or row.value is None:
                continue
            body = messages_body(row.value)
            if body["funding_source"] != "master_account":
                continue
            last = self._last_partner_balance()
            assert last is not None, f"credit from a partner of unknown balance: {body}"
            held = [
                c
                for c in self.model.credits
                if c.event_id not in self.model.named and c.at > self.now - POLICY.credit_hold
            ]
            amount = Decimal(body["amount"])
            reserved = sum((c.amount for c in held), Decimal(0))
            assert reserved + amount <= last, (
                f"partner overdrawn: balance {last}, reserved {reserved}, new credit {amount}"
            )
            self.model.credits.append(Issued(body["event_id"], amount, self.now))

    @invariant()
    def one_claim_and_one_output_per_daily_key(self) -> None:
        tables = self.db.committed
        claims = Counter((c.topup.customer_id, c.topup.business_date) for c in tables.daily_keys)
        assert all(n == 1 for n in claims.values()), claims
        outputs: Counter[tuple[str, str, str]] = Counter()
        for row in tables.outbox:
            if row.topic in (TOPICS.invoice_requested, TOPICS.credit_issued, TOPICS.top_up_failed):
                assert row.value is not None
                body = messages_body(row.value)
                outputs[(body["customer_id"], body["business_date"], row.topic)] += 1
        assert all(n == 1 for n in outputs.values()), outputs
        decisions: Counter[tuple[str, str]] = Counter()
        for customer, date_, _topic in outputs:
            decisions[(customer, date_)] += 1
        assert all(n == 1 for n in decisions.values()), f"two decisions for one key: {outputs}"

    @invariant()
    def stripe_never_charges_twice_nor_past_the_horizon(self) -> None:
        succeeded = Counter(
            i.daily_key for i in self.stripe.intents.values() if i.status is ChargeStatus.SUCCEEDED
        )
        assert all(n == 1 for n in succeeded.values()), f"charged twice: {succeeded}"
        for at, request in self.stripe.creates:
            row = self.charges.rows[request.metadata["daily_key"]]
            assert row.first_attempt_at is not None
            assert at - row.first_attempt_at < STRIPE_KEY_KEPT, f"create past the horizon: {row}"
            assert request.amount_minor == card_minor_units(row.topup.amount, row.topup.currency)

    # --- the steps -------------------------------------------------------------------------------

    @initialize(start=st.sampled_from(STARTS))
    def start(self, start: datetime) -> None:
        self.clock.now = start

    @rule(
        fate=st.sampled_from(OUTCOMES),
        lag=st.sampled_from([0, 0, 60, 3600]),
        search=st.sampled_from([0, 0, 90, 1200]),
    )
    def charger_runs(self, fate: str, lag: int, search: int) -> None:
        """The charger takes the due charges; Stripe's next new create goes as `fate` says, its
        search lags `lag` s behind its writes and takes `search` s to answer."""
        self.stripe.next = fate
        self.stripe.search_lag = timedelta(seconds=lag)
        self.stripe.search_takes = timedelta(seconds=search)
        self.loop.run_until_complete(self.charger.run_once())
        # What the charger's transaction writes: its outbox rows, and a paused card.
        committed = self.db.committed
        known = {r.dedupe_key for r in committed.outbox}
        for record in self.charges.outbox.values():
            if record.dedupe_key not in known:
                committed.outbox.append(record)
        for customer, card in self.charges.paused:
            wallet = committed.wallets.get(customer)
            card_now = wallet.card.stripe_payment_method_id if wallet and wallet.card else None
            if wallet is not None and card_now == card:  # the pause_stripe SQL
                committed.wallets[customer] = replace(wallet, stripe_paused=True)
                self.model.paused[customer] = card
        self.charges.paused.clear()

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        trigger=st.sampled_from(TRIGGERS),
        threshold=st.sampled_from(THRESHOLDS),
        timezone=st.sampled_from(ZONES),
        auto=st.booleans(),
        lateness=LATENESS,
        amounts=st.sampled_from(AMOUNTS),
    )
    def online_top_up(
        self,
        customer: str,
        trigger: str,
        threshold: str,
        timezone: str,
        auto: bool,
        lateness: int,
        amounts: dict[str, str],
    ) -> None:
        self._deliver(
            [
                self._settings(
                    customer,
                    lateness,
                    method="stripe",
                    origin="online_top_up",
                    trigger=trigger,
                    threshold=threshold,
                    timezone=timezone,
                    auto=auto,
                    stripe_customer_id=f"cus_{customer}",
                    stripe_payment_method_id=f"pm_{customer}_{self.ids}",
                    **amounts,
                )
            ]
        )

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        method=st.sampled_from(["cheque_tt", "stripe", "master_account"]),
        trigger=st.sampled_from(TRIGGERS),
        threshold=st.sampled_from(THRESHOLDS),
        timezone=st.sampled_from(ZONES),
        auto=st.booleans(),
        lateness=LATENESS,
        amounts=st.sampled_from(AMOUNTS),
        fallback=st.sampled_from([None, "cheque_tt", "master_account"]),
        max_open=st.sampled_from([None, None, 1, 2]),
    )
    def finance_app(
        self,
        customer: str,
        method: str,
        trigger: str,
        threshold: str,
        timezone: str,
        auto: bool,
        lateness: int,
        amounts: dict[str, str],
        fallback: str | None,
        max_open: int | None,
    ) -> None:
        extra: dict[str, Any] = dict(amounts)
        if max_open is not None:
            extra["max_open_invoices"] = max_open
        if method == "master_account" or fallback == "master_account":
            extra["partner_id"] = PARTNER
        if fallback is not None and fallback != method:
            extra["fallback_method"] = fallback
        self._deliver(
            [
                self._settings(
                    customer,
                    lateness,
                    method=method,
                    trigger=trigger,
                    threshold=threshold,
                    timezone=timezone,
                    auto=auto,
                    **extra,
                )
            ]
        )

    @rule(customer=st.sampled_from(CUSTOMERS), timezone=st.sampled_from(ZONES))
    def moves_timezone(self, customer: str, timezone: str) -> None:
        """The customer's last settings again, with only the timezone changed (a move across
        the date line dates the next event back into the month before)."""
        last = self.last_settings.get(customer)
        if last is None:
            return
        fields = {k: v for k, v in last.items() if k not in ("event_id", "occurred_at")}
        fields.update(
            timezone=timezone,
            method=fields.pop("payment_method"),
            trigger=fields.pop("trigger_amount"),
            threshold=fields.pop("limit_threshold"),
            auto=fields.pop("auto_trigger"),
        )
        del fields["customer_id"]
        self._deliver([self._settings(customer, 0, **fields)])

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        amount=st.sampled_from(BALANCE_AMOUNTS),
        lateness=LATENESS,
    )
    def customer_balance(self, customer: str, amount: str, lateness: int) -> None:
        self._deliver([self._balance(customer, amount, lateness)])

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        amount=st.sampled_from(BALANCE_AMOUNTS),
        auto=st.booleans(),
        gap=st.integers(0, 3),
    )
    def balance_produced_before_its_settings(
        self, customer: str, amount: str, auto: bool, gap: int
    ) -> None:
        """Within the alignment bound, both in one batch: the balance was produced first but
        the Finance app's change (cheque, auto-trigger on or off) is dated `gap` s earlier."""
        low = self._balance(customer, amount, 0)
        change = self._settings(customer, gap, method="cheque_tt", auto=auto)
        self._deliver([low, change])

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        max_open=st.sampled_from([1, 2]),
        days=st.integers(2, 3),
        fallback=st.booleans(),
    )
    def stays_low_for_days(self, customer: str, max_open: int, days: int, fallback: bool) -> None:
        """A Cheque / TT customer (or one whose partner falls back to invoices) with
        `max_open_invoices` stays low for days while invoicing says nothing (or, with the
        invoicing rule, pays some)."""
        extra: dict[str, Any] = {"method": "cheque_tt"}
        if fallback:
            extra = {
                "method": "master_account",
                "partner_id": PARTNER,
                "fallback_method": "cheque_tt",
            }
        self._deliver(
            [self._settings(customer, 0, max_open_invoices=max_open, trigger="50.00", **extra)]
        )
        for _ in range(days):
            self._deliver([self._balance(customer, "-10.00", 0)])
            self.clock.advance(timedelta(days=1))

    @precondition(lambda self: any(self.model.invoices.values()))
    @rule(
        which=st.integers(0, 100),
        status=st.sampled_from(["paid", "void", "issued", "paid"]),
        lateness=LATENESS,
    )
    def invoicing_says(self, which: int, status: str, lateness: int) -> None:
        """Downstream invoicing reports on one of the invoices requested (again, maybe)."""
        every = [(c, i) for c, ids in sorted(self.model.invoices.items()) for i in ids]
        customer, invoice = every[which % len(every)]
        at = self.now - timedelta(seconds=lateness)
        body = {
            "event_id": self._id("i"),
            "occurred_at": at.isoformat(),
            "customer_id": customer,
            "invoice_request_id": invoice,
            "status": status,
        }
        sent = self._record(INVOICES, customer, body)
        self._deliver([sent])
        if status in ("paid", "void"):
            self.model.closed.add(invoice)

    @rule(
        amount=st.sampled_from(PARTNER_AMOUNTS),
        late=st.booleans(),
        names=st.booleans(),
        which=st.integers(0, 10),
    )
    def partner_balance(self, amount: str, late: bool, names: bool, which: int) -> None:
        """The partner's wallet changes: a new sequence, or a late one (stale); naming one of
        the credits issued from it (the wallet service applied it), or none."""
        if late and self.seq > 0:
            sequence = max(self.seq - 1 - which % 3, 0)
        else:
            self.seq += 1
            sequence = self.seq
        extra: dict[str, Any] = {"sequence": sequence}
        if names and self.model.credits:
            extra["caused_by"] = self.model.credits[which % len(self.model.credits)].event_id
        self._deliver([self._balance(PARTNER, amount, 0, **extra)])

    @rule(amount=st.sampled_from(PARTNER_AMOUNTS), names=st.booleans())
    def both_customers_draw_on_the_partner(self, amount: str, names: bool) -> None:
        """The reseller case: both customers on the partner's master account fall due, with a
        partner balance between them that may or may not name the first credit."""
        for customer in CUSTOMERS:
            self._deliver(
                [
                    self._settings(
                        customer, 0, method="master_account", partner_id=PARTNER, trigger="60.00"
                    )
                ]
            )
        self._deliver([self._balance(CUSTOMERS[0], "-10.00", 0)])
        self.seq += 1
        extra: dict[str, Any] = {"sequence": self.seq}
        if names and self.model.credits:
            extra["caused_by"] = self.model.credits[-1].event_id
        self._deliver([self._balance(PARTNER, amount, 0, **extra)])
        self._deliver([self._balance(CUSTOMERS[1], "-10.00", 0)])

    def _open_charges(self) -> list[Any]:
        return [
            r
            for r in self.charges.rows.values()
            if r.phase in ("claimed", "charging") and r.first_attempt_at is not None
        ]

    @precondition(lambda self: any(r.phase == "claimed" for r in self.charges.rows.values()))
    @rule(
        fate=st.sampled_from(["down", "charged_then_500"]),
        before=st.sampled_from([30, 61, 120, 600]),
        search=st.sampled_from([0, 90, 1200]),
    )
    def an_outage_up_to_the_horizon(self, fate: str, before: int, search: int) -> None:
        """Stripe fails a new charge's create (maybe after charging), stays away until just
        before the 24-hour horizon, then its search takes `search` s to answer."""
        self.charger_runs(fate, 0, 0)
        self.time_runs_up_to_the_horizon(before)
        self.charger_runs("ok", 0, search)

    @precondition(lambda self: bool(self._open_charges()))
    @rule(before=st.sampled_from([30, 61, 120, 600]))
    def time_runs_up_to_the_horizon(self, before: int) -> None:
        """The clock comes to `before` s short of the oldest open charge's 24-hour horizon
        (where a slow search must not let a create go out late)."""
        oldest = min(r.first_attempt_at for r in self._open_charges())
        target = oldest + STRIPE_KEY_KEPT - timedelta(seconds=before)
        if target > self.clock.now:
            self.clock.now = target

    @rule(seconds=st.sampled_from([1, 60, 1800, 6 * 3600, 20 * 3600, 25 * 3600, 49 * 3600]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    @rule(timezone=st.sampled_from(ZONES), after=st.sampled_from([1, 3600]))
    def time_passes_a_midnight(self, timezone: str, after: int) -> None:
        """Up to just after the next midnight of a zone (where days, and months, turn)."""
        end = day_end(business_date(self.now, timezone), timezone)
        self.clock.now = end + timedelta(seconds=after)

    @precondition(lambda self: bool(self.sent))
    @rule(which=st.integers(0, 10_000))
    def redelivery(self, which: int) -> None:
        """A record comes again (a crash before the commit, a rebalance, a replay): nothing
        changes, whenever it comes back."""
        again = self.sent[which % len(self.sent)]
        before = self.db.snapshot()
        self.steps += 1
        self.loop.run_until_complete(self.handler.handle([again.record]))
        after = self.db.snapshot()
        assert after.daily_keys == before.daily_keys, f"a redelivery claimed a key: {again}"
        outputs_before = [r for r in before.outbox if r.topic != TOPICS.dead_letter]
        outputs_after = [r for r in after.outbox if r.topic != TOPICS.dead_letter]
        assert outputs_after == outputs_before, f"a redelivery published: {again}"


def messages_body(value: bytes) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(value)
    return body


MoneyMachine.TestCase.settings = settings(
    max_examples=MODEL_EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMoneyModel = MoneyMachine.TestCase

__all__ = ["TestMoneyModel", "messages"]
