"""What proposed settings would have done over one customer's recorded history
(`auto-topup simulate`). Pure: it takes decoded events, the policy and the proposal, and returns
a result value; the command reads Kafka and prints it.

The history runs twice through the same rules as the service (`rules.apply_balance`,
`rules.apply_settings`, and the rail's `settle` for what a due top-up does, as
`handlers.BatchHandler._settle` asks it): once as recorded ("current"), once with the proposed
fields laid over every settings event of the customer ("proposed"), and so over the settings
in effect at `since` too. Each event is decided with `now` = its own `occurred_at`, as if the
service had processed it at once: the old-day guard never blocks history, and no event is
future-dated. Events before `since` only build the state; decisions are counted from `since`.

What a simulation cannot know:
- a Stripe charge's outcome: a due Stripe top-up counts as succeeded (`SIMULATED_CHARGE`);
- how other amounts would have changed later balances: balances are taken as recorded, so a
  larger top-up does not lift the balances after it (nor a smaller one lower them); unless
  `shift_balances`, which moves the proposed run's balances by the difference between its
  credits and the recorded run's, as if every top-up had been credited at once (the partner's
  balances of a master account are taken as recorded all the same).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from service.config import Topics
from service.domain.calendar import business_date
from service.domain.model import BalanceChanged, SettingsUpdated, TopUp, Wallet
from service.domain.notices import Notice
from service.domain.rails import ChargeResult, ChargeStatus, Terms
from service.domain.rules import Decision, Outcome, Policy, Status, apply_balance, apply_settings
from service.service_layer import topups

# The topics a simulation's records would go to (none is published).
_TOPICS = Topics()

Event = BalanceChanged | SettingsUpdated
# Field name of the domain SettingsUpdated -> the value laid over every settings event.
Proposal = Mapping[str, Any]

# The payment intent a simulated Stripe charge "succeeds" with: no card is ever charged.
SIMULATED_CHARGE = "simulated"

# The v2 amount settings, kept together on the event as `amounts` (field name -> Amounts').
AMOUNT_FIELDS = {
    "amount_mode": "mode",
    "target_balance": "target_balance",
    "max_amount": "max_amount",
    "monthly_cap": "monthly_cap",
}
SETTINGS_FIELDS = frozenset(f.name for f in fields(SettingsUpdated)) - {"amounts"} | set(
    AMOUNT_FIELDS
)
# Fields a proposal may not change: they say which event it is, not what it sets.
_IDENTITY = frozenset({"event_id", "occurred_at", "customer_id", "origin", "version"})


def proposal_error(proposal: Proposal) -> str | None:
    """Why the proposal cannot be laid over settings events, or None."""
    unknown = sorted(set(proposal) - (SETTINGS_FIELDS - _IDENTITY))
    return f"not a proposable settings field: {', '.join(unknown)}" if unknown else None


@dataclass(frozen=True)
class History:
    """One customer's records, each stream in the order its partition holds them."""

    customer_id: str
    settings: Sequence[SettingsUpdated]
    balances: Sequence[BalanceChanged]
    # The balance events of the partners whose master account the customer paid from.
    partner_balances: Sequence[BalanceChanged] = ()


@dataclass(frozen=True)
class SimulatedTopUp:
    business_date: date
    method: str
    amount: Decimal
    currency: str
    result: str  # the daily key's result: invoice_requested, credit_issued or failed
    reason: str | None = None  # why it failed


@dataclass(frozen=True)
class Scenario:
    """What one run of the history decided from `since` on."""

    top_ups: tuple[SimulatedTopUp, ...] = ()
    days_at_or_below_threshold: int = 0
    lowest_balance: Decimal | None = None
    suppressed: Mapping[str, int] = field(default_factory=dict)
    blocked: Mapping[str, int] = field(default_factory=dict)
    # Records the rules refuse (the service dead-letters them), by reason.
    rejected: Mapping[str, int] = field(default_factory=dict)
    notices: tuple[str, ...] = ()

    @property
    def paid(self) -> tuple[SimulatedTopUp, ...]:
        """The top-ups that moved money (not those that failed)."""
        return tuple(t for t in self.top_ups if t.result != "failed")

    @property
    def failed(self) -> Mapping[str, int]:
        return dict(Counter(t.reason or "failed" for t in self.top_ups if t.result == "failed"))

    @property
    def totals(self) -> Mapping[str, Decimal]:
        """The paid amounts by currency."""
        out: dict[str, Decimal] = {}
        for t in self.paid:
            out[t.currency] = out.get(t.currency, Decimal(0)) + t.amount
        return out


@dataclass(frozen=True)
class Simulation:
    customer_id: str
    since: datetime
    until: datetime
    proposal: Proposal
    current: Scenario
    proposed: Scenario
    shift_balances: bool = False  # the proposed run's balances moved by its other credits


def in_event_time(history: History) -> list[Event]:
    """The history in the order the service applies it (`event_order.in_event_time`'s key): the
    earliest head first, settings before a balance of the same instant; each stream keeps its
    partition's order (a balance that comes after a newer one stays stale)."""
    streams: list[Iterable[tuple[datetime, int, Event]]] = [
        ((e.occurred_at, 0, e) for e in history.settings),
        ((e.occurred_at, 1, e) for e in history.balances),
        ((e.occurred_at, 1, e) for e in history.partner_balances),
    ]
    return [e for _, _, e in heapq.merge(*streams, key=lambda item: (item[0], item[1]))]


def simulate(
    history: History,
    policy: Policy,
    proposal: Proposal,
    since: datetime,
    until: datetime,
    *,
    shift_balances: bool = False,
) -> Simulation:
    """The history up to `until` (by `occurred_at`), as recorded and with the proposal.

    `shift_balances`: in the proposed run, each of the customer's balances after a top-up is
    moved by what the proposed run credited so far less what the recorded run did, as if every
    top-up had been credited to the wallet at once (an invoice paid the moment it was asked
    for, a credit applied at once). Without it, balances are taken as recorded."""
    problem = proposal_error(proposal)
    if problem is not None:
        raise ValueError(problem)
    events = [e for e in in_event_time(history) if e.occurred_at <= until]
    current, credited = _run(events, history.customer_id, policy, {}, since)
    proposed, _ = _run(
        events, history.customer_id, policy, proposal, since, credited if shift_balances else None
    )
    return Simulation(
        history.customer_id, since, until, dict(proposal), current, proposed, shift_balances
    )


@dataclass
class _Tally:
    top_ups: list[SimulatedTopUp] = field(default_factory=list)
    low_days: set[date] = field(default_factory=set)
    lowest: Decimal | None = None
    suppressed: Counter[str] = field(default_factory=Counter)
    blocked: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    notices: list[str] = field(default_factory=list)

    def decided(self, outcome: Outcome) -> None:
        reason = outcome.reason or ""
        if outcome.status is Status.REJECTED:
            self.rejected[reason] += 1
        elif outcome.decision is Decision.SUPPRESSED:
            self.suppressed[reason] += 1
        elif outcome.decision is Decision.BLOCKED:
            self.blocked[reason] += 1

    def balance_seen(self, event: BalanceChanged, wallet: Wallet, policy: Policy) -> None:
        """The lowest balance, and whether its business day had one at or below the
        threshold in effect (the settings' or, for a card, the card's)."""
        amount = event.balance
        self.lowest = amount if self.lowest is None else min(self.lowest, amount)
        settings = wallet.settings
        if settings is None:
            return
        terms = policy.rails.serving(settings).terms(wallet)
        if isinstance(terms, Terms) and amount <= terms.threshold:
            zone = settings.timezone or policy.default_timezone
            self.low_days.add(business_date(event.occurred_at, zone))

    def counted(
        self, event: Event, outcome: Outcome, top_up: SimulatedTopUp | None, policy: Policy
    ) -> None:
        self.decided(outcome)
        if top_up is not None:
            self.top_ups.append(top_up)
        if isinstance(event, BalanceChanged):
            self.balance_seen(event, outcome.wallet, policy)

    def scenario(self) -> Scenario:
        return Scenario(
            tuple(self.top_ups),
            len(self.low_days),
            self.lowest,
            dict(self.suppressed),
            dict(self.blocked),
            dict(self.rejected),
            tuple(self.notices),
        )


def overlaid(event: SettingsUpdated, proposal: Proposal) -> SettingsUpdated:
    """The settings event with the proposal laid over it (amount settings inside `amounts`)."""
    plain = {k: v for k, v in proposal.items() if k not in AMOUNT_FIELDS}
    amounts = {AMOUNT_FIELDS[k]: v for k, v in proposal.items() if k in AMOUNT_FIELDS}
    out = replace(event, **plain) if plain else event
    return replace(out, amounts=replace(out.amounts, **amounts)) if amounts else out


def _apply(wallets: dict[str, Wallet], event: Event, proposal: Proposal, policy: Policy) -> Outcome:
    """The event applied to its wallet, as the handler applies it, with `now` = its time."""
    now = event.occurred_at
    wallet = wallets.get(event.customer_id) or Wallet(event.customer_id)
    if isinstance(event, SettingsUpdated):
        outcome = apply_settings(wallet, overlaid(event, proposal), now, policy)
    else:
        outcome = apply_balance(wallet, event, now, policy)
    wallets[event.customer_id] = outcome.wallet
    return outcome


def _run(
    events: Sequence[Event],
    customer_id: str,
    policy: Policy,
    proposal: Proposal,
    since: datetime,
    recorded: Sequence[Decimal] | None = None,
) -> tuple[Scenario, list[Decimal]]:
    """One run of the events; with it, what it credited on each event (for `recorded`: what the
    recorded run credited on each, by which the customer's later balances are moved)."""
    wallets: dict[str, Wallet] = {}
    tally = _Tally()
    credited: list[Decimal] = []
    shift = Decimal(0)
    for i, event in enumerate(events):
        if shift and isinstance(event, BalanceChanged) and event.customer_id == customer_id:
            event = replace(event, balance=event.balance + shift)
        outcome = _apply(wallets, event, proposal, policy)
        top_up = None
        notices = outcome.notices
        if outcome.topup is not None:
            top_up, more = _settle(outcome.topup, wallets, event.occurred_at, policy)
            notices += more
        credited.append(top_up.amount if top_up and top_up.result != "failed" else Decimal(0))
        if recorded is not None:
            shift += credited[i] - recorded[i]
        if event.customer_id == customer_id and event.occurred_at >= since:
            tally.counted(event, outcome, top_up, policy)
            tally.notices += [f"{n.type.value} {n.period}" for n in notices]
    return tally.scenario(), credited


def _settle(
    topup: TopUp, wallets: dict[str, Wallet], now: datetime, policy: Policy
) -> tuple[SimulatedTopUp, tuple[Notice, ...]]:
    """What the due top-up does, as the handler settles it (its rail and fallback, the month's
    cap, the notices); a charge made later (Stripe) counts as succeeded."""
    done = topups.settle(topup, wallets, policy, _TOPICS, now)
    for changed in done.changed:
        wallets[changed.customer_id] = changed
    if done.record is None:
        rail = policy.rails[topup.payment_method]
        settled = rail.charged(topup, ChargeResult(ChargeStatus.SUCCEEDED, SIMULATED_CHARGE))
        result, reason = settled.result, settled.reason
    else:
        result, reason = done.claim.result or "", done.claim.reason
    settled_topup = done.topup
    return (
        SimulatedTopUp(
            settled_topup.business_date,
            settled_topup.payment_method.value,
            settled_topup.amount,
            settled_topup.currency,
            result,
            reason,
        ),
        done.notices,
    )
