"""The contract's decisions from the input messages alone; the chaos run compares what the
service published with them (compare.py).

It knows nothing of the service's code: it reads the scenario's messages in the order each
partition delivers them (phases in order; inside a phase, each customer's own order) and says
which decision each daily key must come to.

Two rules depend on more than the messages, and the model keeps both explicit:

- The old-day guard compares an event's business date with *today*, the date of the service's
  clock in the customer's timezone. The model decides with `now`, the instant the service's
  clock reads at the start of the run; it holds while the service's clock stays before
  `horizon` (the next business-day boundary in one of the scenario's timezones), which the
  harness checks.
- A declined card pauses Stripe top-ups when the charger records the failure, beside the
  consumer: after the phase's barrier for sure, but at no known point inside the phase. So the
  pause takes effect at the end of the phase, and an event of the same phase whose outcome
  would depend on when the pause lands raises `AmbiguousScenario` (the scenario must not
  contain one) instead of being guessed.

A customer paid by master account is funded by its partner when the partner can cover the
top-up: its last balance (the newest applied) less every credit issued from it that is still
reserved. Each credit is reserved under its credit-issued event's id (the contract's
deterministic id) until a balance event of the partner's wallet names it in `caused_by`, stale
or duplicate included (a dead-lettered one releases nothing), or until the hold passes (48 h
on the service's clock, which the harness sets: no credit of a run reaches it, since every
decision is made before `horizon`, less than a day after `now`). Which customer of one partner
is decided first inside a phase is not known (other partitions; inside one, the alignment
hold and a failing batch's split let customers pass each other), so a phase in which that
could matter raises `AmbiguousScenario`: a partner's balance event in a phase where it funds
(or refuses) a top-up, or a refusal for less than the partner could cover at the phase's start
(it would be funded if decided first). Otherwise the same customers are funded in every order.

A Stripe top-up charges the card's own terms: the Trigger Amount and Limit Threshold of the
latest online top-up by (occurred_at, event_id), which a settings message stale by version
still sets (and which lift a pause), whatever the Finance app stored since. A balance dated
before the settings in effect is decided on their date.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from tests.reference.funds import Reserved
from tests.reference.staleness import Seen
from tests.reference.wire import BALANCE, SETTINGS, credit_issued_id

SCALES = {"JPY": 0, "KWD": 3}
DEFAULT_TIMEZONE = "UTC"  # the service's AUTO_TOPUP_DEFAULT_TIMEZONE, which the harness keeps
# The service's AUTO_TOPUP_PARTNER_CREDIT_HOLD_SECONDS, which the harness sets: longer than
# any run can last before `horizon` (at most a day after `now`), so no credit expires.
CREDIT_HOLD = timedelta(hours=48)


class Message(Protocol):
    """One input message, in the order its partition delivers it."""

    @property
    def topic(self) -> str: ...  # wire.SETTINGS or wire.BALANCE

    @property
    def value(self) -> bytes: ...

    @property
    def dead_reason(self) -> str | None: ...  # set when it must be dead-lettered


class Customer(Protocol):
    @property
    def timezone(self) -> str: ...


class Stream(Protocol):
    """What the model reads: the customers' timezones, the partners, and the messages in
    phases (the service consumes each phase before the next)."""

    @property
    def customers(self) -> Sequence[Customer]: ...

    @property
    def partners(self) -> Sequence[str]: ...

    @property
    def phases(self) -> Sequence[Sequence[Message]]: ...


class AmbiguousScenario(Exception):
    """The outcome depends on timing that the contract leaves open: fix the scenario."""


@dataclass(frozen=True)
class Expected:
    kind: str  # invoice-requested | credit-issued | top-up-failed
    customer_id: str
    business_date: date
    amount: str
    currency: str
    payment_method: str
    trigger_event_id: str
    balance_at_trigger: str
    reason: str | None = None
    funding_source: str | None = None
    partner_id: str | None = None


def _fmt(value: Decimal, currency: str) -> str:
    out = value.quantize(Decimal(1).scaleb(-SCALES.get(currency, 2)))
    return f"{abs(out) if out == 0 else out:f}"


def next_day_boundary(at: datetime, timezone: str) -> datetime:
    """The first instant after `at` that is on another business date in `timezone`."""
    zone = ZoneInfo(timezone)
    tomorrow = at.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=zone).astimezone(UTC)


class Reference:
    def __init__(self, scenario: Stream, declined_cards: set[str], now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.now = now
        self.declined = declined_cards
        self.settings: dict[str, dict[str, Any]] = {}
        self.balance: dict[str, dict[str, Any]] = {}
        self.days: dict[tuple[str, date], Expected] = {}
        self.dead: list[Message] = []
        self.paused: set[str] = set()  # Stripe top-ups paused (as of the last barrier)
        self.terms: dict[str, dict[str, Any]] = {}  # the card's terms, from online top-ups
        self.pausing: set[str] = set()  # declined in this phase: paused once it is over
        self.stats: Counter[str] = Counter()
        self.partners = set(scenario.partners)
        # wallet -> what it has seen of each input topic (the staleness rule)
        self.seen: dict[tuple[str, str], Seen] = {}
        # partner -> its credits still reserved, and the amount released by `caused_by` (to
        # tell a top-up funded only because of a release)
        self.reserved: dict[str, Reserved] = {}
        # In the current phase: wallets with a balance event, and partners that decided a
        # top-up with what they could cover when the first was decided.
        self.phase_balances: set[str] = set()
        self.phase_funding: dict[str, Decimal | None] = {}
        zones = {c.timezone for c in scenario.customers} | {DEFAULT_TIMEZONE}
        self.horizon = min(next_day_boundary(now, z) for z in zones)
        if self.horizon - now >= CREDIT_HOLD:
            raise ValueError("a partner credit's hold could pass before the run is over")
        for phase in scenario.phases:
            for msg in phase:
                self._apply(msg)
            self.paused |= self.pausing  # the barrier waits for every charge to finish
            self.pausing.clear()
            self.phase_balances.clear()
            self.phase_funding.clear()

    def _apply(self, msg: Message) -> None:
        if msg.dead_reason is not None:
            self.dead.append(msg)
            return
        body = json.loads(msg.value, parse_float=Decimal)
        if msg.topic == BALANCE:
            self._balance(body)
        else:
            self._settings(body)

    def _balance(self, body: dict[str, Any]) -> None:
        who = body["customer_id"]
        if who in self.phase_funding:
            raise AmbiguousScenario(
                f"{who}: a balance event in the phase in which it funds a top-up: which is "
                "applied first is a race"
            )
        self.phase_balances.add(who)
        stale = not self._newer(BALANCE, body, body.get("sequence"))
        caused_by = body.get("caused_by")
        if who in self.partners:
            self.stats["partner_balance_" + ("caused_by" if caused_by else "plain")] += 1
        if self.reserved.setdefault(who, Reserved()).release(caused_by):
            # Applied by the wallet service: no longer reserved (stale or not: the newer
            # balance we hold includes it too).
            self.stats["partner_released"] += 1
            if stale:
                self.stats["partner_released_by_stale"] += 1
        if stale:
            return  # stale or repeated
        self.balance[who] = body
        at = datetime.fromisoformat(body["occurred_at"])
        # A balance dated before the settings in effect is decided at their time (event-time
        # order); the old-day guard still judges the balance's own date.
        s = self.settings.get(who)
        decided = max(at, datetime.fromisoformat(s["occurred_at"])) if s else at
        self._due(who, body["event_id"], decided, at)

    def _newer(self, topic: str, body: dict[str, Any], counter: int | None) -> bool:
        """Whether the event applies to its wallet (the staleness rule of docs/contract.md)."""
        seen = self.seen.setdefault((body["customer_id"], topic), Seen())
        at = datetime.fromisoformat(body["occurred_at"])
        return seen.see(at, body["event_id"], counter)

    def _settings(self, body: dict[str, Any]) -> None:
        who = body["customer_id"]
        old = self.settings.get(who)
        if not self._newer(SETTINGS, body, body.get("version")):
            # Stale as settings, but maybe the card's latest online top-up.
            if body["origin"] == "online_top_up" and self._saved_card(who, body):
                self.stats["card_terms_from_stale"] += 1
            return
        self.settings[who] = body
        if body["origin"] == "online_top_up":
            self._saved_card(who, body)
        on = body["auto_trigger"] and (old is None or not old["auto_trigger"])
        raised = old is not None and Decimal(body["limit_threshold"]) > Decimal(
            old["limit_threshold"]
        )
        if on or raised:
            at = datetime.fromisoformat(body["occurred_at"])
            self._due(who, body["event_id"], at, at)

    def _saved_card(self, who: str, body: dict[str, Any]) -> bool:
        """The card's terms from an online top-up, unless the card's are newer (then False);
        new card details lift a pause."""
        at = (datetime.fromisoformat(body["occurred_at"]), body["event_id"])
        terms = self.terms.get(who)
        if terms is not None and at <= terms["newest"]:
            return False
        self.terms[who] = {
            "newest": at,
            "trigger_amount": body["trigger_amount"],
            "limit_threshold": body["limit_threshold"],
        }
        if who in self.pausing:
            raise AmbiguousScenario(
                f"{who}: new card details in the phase whose declined charge pauses the "
                "card: the pause may land before or after them"
            )
        if who in self.paused:
            self.stats["pause_lifted"] += 1
        self.paused.discard(who)
        return True

    def _due(self, who: str, trigger: str, decided: datetime, event_at: datetime) -> None:
        s, b = self.settings.get(who), self.balance.get(who)
        if s is None or b is None or not s["auto_trigger"]:
            return
        amount, threshold = s["trigger_amount"], s["limit_threshold"]
        if s["payment_method"] == "stripe":  # the card is charged on its own terms
            amount = self.terms[who]["trigger_amount"]
            threshold = self.terms[who]["limit_threshold"]
        if Decimal(b["balance"]) > Decimal(threshold):
            return
        zone = ZoneInfo(s.get("timezone") or DEFAULT_TIMEZONE)
        day = decided.astimezone(zone).date()
        if event_at.astimezone(zone).date() < self.now.astimezone(zone).date() - timedelta(days=1):
            self.stats["old_day"] += 1
            return
        method = s["payment_method"]
        taken = (who, day) in self.days
        if method == "stripe" and not taken and who in self.pausing:
            raise AmbiguousScenario(
                f"{who}: due on {day} in the phase whose declined charge pauses the card: "
                "a second attempt or none, depending on when the charge fails"
            )
        if method == "stripe" and who in self.paused:
            if not taken:  # a day the pause alone keeps free
                self.stats["paused_other_day"] += 1
            return
        if taken:
            return
        currency = s["currency"]
        common = {
            "customer_id": who,
            "business_date": day,
            "currency": currency,
            "amount": _fmt(Decimal(amount), currency),
            "payment_method": method,
            "trigger_event_id": trigger,
            "balance_at_trigger": _fmt(Decimal(b["balance"]), currency),
        }
        if method == "cheque_tt":
            self.days[(who, day)] = Expected("invoice-requested", **common)
        elif method == "master_account":
            self.days[(who, day)] = self._fund(s["partner_id"], Decimal(amount), common)
        elif s["stripe_payment_method_id"] in self.declined:
            self.days[(who, day)] = Expected("top-up-failed", reason="card_declined", **common)
            self.pausing.add(who)  # a hard failure of the card itself
        else:
            self.days[(who, day)] = Expected("credit-issued", funding_source="stripe", **common)

    def _fund(self, partner: str, amount: Decimal, common: dict[str, Any]) -> Expected:
        """A master-account top-up: funded by the partner if it can cover it, else refused."""
        who = common["customer_id"]
        if partner in self.phase_balances:
            raise AmbiguousScenario(
                f"{who}: funded by {partner} in a phase with a balance event of the partner: "
                "which is applied first is a race"
            )
        last = self.balance.get(partner)
        reserved = self.reserved.setdefault(partner, Reserved())
        available = reserved.available(None if last is None else Decimal(last["balance"]))
        # What it could cover when the phase began: no balance event of it comes in the phase.
        at_start = self.phase_funding.setdefault(partner, available)
        if last is None or available is None:
            return Expected("top-up-failed", reason="partner_balance_unknown", **common)
        if last["currency"] != common["currency"]:
            return Expected("top-up-failed", reason="partner_currency_mismatch", **common)
        if available < amount:
            if at_start is None or amount <= at_start:
                raise AmbiguousScenario(
                    f"{who}: refused by {partner} for {amount}, which it could cover at the "
                    f"phase's start ({at_start}): funded if decided before the others"
                )
            self.stats["partner_insufficient_funds"] += 1
            return Expected("top-up-failed", reason="partner_insufficient_funds", **common)
        if available - reserved.released < amount:
            self.stats["partner_funded_after_release"] += 1  # refused had none been released
        reserved.reserve(credit_issued_id(who, common["business_date"]), amount)
        self.stats["partner_credits"] += 1
        return Expected(
            "credit-issued", funding_source="master_account", partner_id=partner, **common
        )

    @property
    def business_dates(self) -> set[date]:
        return {day for _, day in self.days}
