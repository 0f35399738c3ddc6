"""A small chaos run inside `make test`; `make chaos` runs the big one.

The service's clock is pinned (AUTO_TOPUP_CLOCK_OFFSET_SECONDS) and the scenario is built from
the same instant, so no run depends on the hour it starts at. Two smaller runs pin it next to
the UTC day boundary, where a Stripe customer's last two hours span two business days; the
reference model's rules for the day boundary are checked without a service first.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, time, timedelta

import pytest

from service.contract.codec import output_event_id
from tests.chaos.harness import DEFAULT_NOW, Chaos, Config, Result, summary
from tests.chaos.scenario import Customer, Msg, Scenario, generate
from tests.conftest import Infra
from tests.reference.contract import AmbiguousScenario, Reference
from tests.reference.wire import BALANCE, SETTINGS, credit_issued_id

CARDS = {"good": ("cus_good", "pm_good"), "declined": ("cus_declined", "pm_declined")}
DAY = date(2026, 3, 10)
AFTER_MIDNIGHT = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
BEFORE_MIDNIGHT = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)


def _assert_clean(result: Result) -> None:
    assert result.counts["lost"] == 0, result.line()
    assert result.counts["doubled"] == 0, result.line()
    assert result.counts["double_charges"] == 0, result.line()
    assert result.counts["divergent"] == 0, result.line()
    assert result.dead_missing == 0, summary(result)
    assert result.unclean_exits == 0, summary(result)
    assert result.stripe_creates > 0, summary(result)  # the proxy saw the charges it counts
    # Partners refused some top-ups and funded others only once a credit was released.
    assert result.counts["partner_insufficient_funds"] >= 1, summary(result)
    assert result.reference_stats["partner_funded_after_release"] >= 1, summary(result)
    assert not result.uncovered(), summary(result)


async def test_nothing_lost_nothing_doubled_under_kills_restarts_and_a_replay(infra: Infra) -> None:
    cfg = Config(
        kafka=infra.kafka,
        database_url=infra.database_url,
        seed=11,
        customers=300,
        events=3000,
        instances=2,
        kill_every=2.0,
        min_kills=3,
        balance_phase_seconds=6.0,
        restart_kafka=False,
        restart_postgres=True,
    )
    assert cfg.now == DEFAULT_NOW  # a fixed instant, whatever the hour of the run
    result = await Chaos(cfg).execute()
    print(result.line(), summary(result))
    _assert_clean(result)
    assert result.kills >= 3
    assert result.restarts == ["postgres"]


@pytest.mark.parametrize("now", [AFTER_MIDNIGHT, BEFORE_MIDNIGHT], ids=["00:30Z", "23:30Z"])
async def test_the_reference_agrees_with_the_service_next_to_midnight(
    infra: Infra, now: datetime
) -> None:
    """Smaller, with one instance and without kills or restarts (the run above has those):
    what it is for is the business dates, the old-day guard and the Stripe pause across a day
    boundary, as the service decides them with its own clock."""
    cfg = Config(
        kafka=infra.kafka,
        database_url=infra.database_url,
        seed=11,
        customers=120,
        events=900,
        instances=1,
        kill_every=3600.0,  # never, within the run
        min_kills=0,
        balance_phase_seconds=2.0,
        restart_kafka=False,
        restart_postgres=False,
        now=now,
    )
    result = await Chaos(cfg).execute()
    print(result.line(), summary(result))
    _assert_clean(result)
    # The run covered what it is for (the reference decided these; the service agreed).
    assert {DAY - timedelta(days=1), DAY} <= result.business_dates, summary(result)
    assert result.reference_stats["paused_other_day"] >= 1, summary(result)
    if now == AFTER_MIDNIGHT:  # 30 hours back reach a day past the old-day guard
        assert result.reference_stats["old_day"] >= 1, summary(result)


# --- the reference model's own rules, without a service ----------------------------------


def _stripe_customer(tag: str, card: str) -> tuple[Customer, list[Msg]]:
    c = Customer(f"c-{tag}", "stripe", "USD", 2, "UTC", card=card)
    settings = {
        "event_id": f"s-{tag}",
        "occurred_at": "2026-03-08T00:00:00Z",
        "customer_id": c.id,
        "origin": "online_top_up",
        "payment_method": "stripe",
        "auto_trigger": True,
        "trigger_amount": "50.00",
        "limit_threshold": "10.00",
        "currency": "USD",
        "timezone": "UTC",
        "stripe_customer_id": CARDS[card][0],
        "stripe_payment_method_id": CARDS[card][1],
        "version": 1,
    }
    return c, [Msg(SETTINGS, c.id, json.dumps(settings).encode())]


def _balance(c: Customer, seq: int, at: datetime) -> Msg:
    body = {
        "event_id": f"b-{c.id}-{seq}",
        "occurred_at": at.isoformat(),
        "customer_id": c.id,
        "currency": "USD",
        "balance": "5.00",
        "sequence": seq,
    }
    return Msg(BALANCE, c.id, json.dumps(body).encode())


def test_the_reference_pauses_a_declined_card_on_the_next_business_day() -> None:
    now = AFTER_MIDNIGHT
    declined, settings_d = _stripe_customer("d", "declined")
    good, settings_g = _stripe_customer("g", "good")
    late, early = now - timedelta(minutes=40), now - timedelta(minutes=10)  # 23:50, 00:20
    scenario = Scenario(1, now, [declined, good], [])
    scenario.phases = [
        settings_d + settings_g,
        [_balance(declined, 1, late), _balance(good, 1, late)],
        [_balance(declined, 2, early), _balance(good, 2, early)],
    ]
    reference = Reference(scenario, {CARDS["declined"][1]}, now)
    assert {(who, day): e.kind for (who, day), e in reference.days.items()} == {
        (declined.id, DAY - timedelta(days=1)): "top-up-failed",  # and paused after it
        (good.id, DAY - timedelta(days=1)): "credit-issued",
        (good.id, DAY): "credit-issued",
    }
    assert reference.stats["paused_other_day"] == 1
    assert reference.horizon == datetime(2026, 3, 11, tzinfo=UTC)


def test_the_reference_refuses_to_guess_when_the_pause_lands() -> None:
    """Both days in one phase: whether the second event comes before the charge fails (a
    second attempt) or after it (paused) is a race, so the model must not decide it."""
    now = AFTER_MIDNIGHT
    declined, settings = _stripe_customer("d", "declined")
    scenario = Scenario(1, now, [declined], [])
    scenario.phases = [
        settings,
        [
            _balance(declined, 1, now - timedelta(minutes=40)),
            _balance(declined, 2, now - timedelta(minutes=10)),
        ],
    ]
    with pytest.raises(AmbiguousScenario):
        Reference(scenario, {CARDS["declined"][1]}, now)


@pytest.mark.parametrize("seed", [11, 2026])
def test_generated_scenarios_are_unambiguous_at_every_half_hour(seed: int) -> None:
    for step in range(48):
        now = datetime.combine(DAY, time(0), tzinfo=UTC) + timedelta(minutes=30 * step)
        scenario = generate(seed, 150, 1200, now, CARDS, run="x")
        reference = Reference(scenario, {CARDS["declined"][1]}, now)  # raises if ambiguous
        assert reference.days, now
        assert reference.horizon > now


# --- partners that cannot cover every top-up ---------------------------------------------


def _reordered(rng: random.Random, phase: list[Msg]) -> list[Msg]:
    """The phase in another order the service may apply it in: each key's own order kept
    (one partition), different keys in any order (other partitions; or one partition, whose
    customers pass each other under the alignment hold or a failing batch's split)."""
    by_key: dict[str, list[Msg]] = {}
    for msg in phase:
        by_key.setdefault(msg.key, []).append(msg)
    keys = [msg.key for msg in phase]
    rng.shuffle(keys)
    heads = {key: iter(msgs) for key, msgs in by_key.items()}
    return [next(heads[key]) for key in keys]


def test_tight_partners_refuse_then_fund_after_a_release_in_every_order() -> None:
    now = DEFAULT_NOW
    scenario = generate(11, 150, 1200, now, CARDS, run="x")
    reference = Reference(scenario, {CARDS["declined"][1]}, now)
    assert len(scenario.tight) >= 2
    for partner, team in scenario.tight.items():
        outcomes = [
            (e.kind, e.reason, e.partner_id)
            for (who, _), e in sorted(reference.days.items())
            if who in team
        ]
        assert ("credit-issued", None, partner) in outcomes, partner
        assert ("top-up-failed", "partner_insufficient_funds", None) in outcomes, partner
    stats = reference.stats
    assert stats["partner_insufficient_funds"] >= 1, stats
    assert stats["partner_funded_after_release"] >= 1, stats  # refused, had none been released
    assert stats["partner_released_by_stale"] >= 1, stats
    assert stats["partner_balance_caused_by"] >= 1, stats
    assert stats["partner_balance_plain"] >= 1, stats
    # The ids the partners' balance events name are the service's credit-issued ids.
    day = DAY
    assert credit_issued_id("c-x-t0-0", day) == output_event_id("c-x-t0-0", day, "credit-issued")
    # Whatever order the service applies each phase in, the same decisions.
    rng = random.Random(1)
    for _ in range(10):
        shuffled = Scenario(
            scenario.seed,
            now,
            scenario.customers,
            scenario.partners,
            [_reordered(rng, phase) for phase in scenario.phases],
            scenario.tight,
        )
        assert Reference(shuffled, {CARDS["declined"][1]}, now).days == reference.days


def _partner_customer(tag: str, partner: str, amount: str) -> tuple[Customer, Msg]:
    c = Customer(f"c-{tag}", "master_account", "USD", 2, "UTC", partner)
    settings = {
        "event_id": f"s-{tag}",
        "occurred_at": "2026-03-08T00:00:00Z",
        "customer_id": c.id,
        "origin": "finance_app",
        "payment_method": "master_account",
        "partner_id": partner,
        "auto_trigger": True,
        "trigger_amount": amount,
        "limit_threshold": "10.00",
        "currency": "USD",
        "version": 1,
    }
    return c, Msg(SETTINGS, c.id, json.dumps(settings).encode())


def _partner_balance(partner: str, seq: int, amount: str, caused_by: str | None = None) -> Msg:
    body = {
        "event_id": f"b-{partner}-{seq}",
        "occurred_at": "2026-03-09T00:00:00Z",
        "customer_id": partner,
        "currency": "USD",
        "balance": amount,
        "sequence": seq,
    }
    if caused_by is not None:
        body["caused_by"] = caused_by
    return Msg(BALANCE, partner, json.dumps(body).encode())


def test_the_reference_refuses_to_guess_which_customer_a_partner_funds_first() -> None:
    now = DEFAULT_NOW
    a, settings_a = _partner_customer("a", "p", "60.00")
    b, settings_b = _partner_customer("b", "p", "60.00")
    low = now - timedelta(minutes=5)
    first = [settings_a, settings_b, _partner_balance("p", 1, "100.00")]
    both = [_balance(a, 1, low), _balance(b, 1, low)]

    # 100 covers either, not both: who is refused depends on who is decided first.
    scenario = Scenario(1, now, [a, b], ["p"], [first, both])
    with pytest.raises(AmbiguousScenario, match="could cover"):
        Reference(scenario, set(), now)

    # A phase apart: A is funded, C refused (60 of the 100 stay reserved for A). The partner's
    # wallet shows A's credit applied (caused_by: released) and the partner's own payment;
    # C is funded the next day, which it would not be had A's credit stayed reserved.
    c, settings_c = _partner_customer("c", "p", "50.00")
    credit = credit_issued_id(a.id, DAY)
    scenario = Scenario(
        1,
        now,
        [a, c],
        ["p"],
        [
            [settings_a, settings_c, _partner_balance("p", 1, "100.00")],
            [both[0]],
            [_balance(c, 1, low)],
            [_partner_balance("p", 2, "40.00", credit), _partner_balance("p", 3, "90.00")],
            [_balance(c, 2, now + timedelta(days=1))],
        ],
    )
    reference = Reference(scenario, set(), now + timedelta(days=1))
    assert {(who, day): (e.kind, e.reason) for (who, day), e in reference.days.items()} == {
        (a.id, DAY): ("credit-issued", None),
        (c.id, DAY): ("top-up-failed", "partner_insufficient_funds"),
        (c.id, DAY + timedelta(days=1)): ("credit-issued", None),
    }
    assert reference.stats["partner_funded_after_release"] == 1
    assert reference.stats["partner_balance_caused_by"] == 1
    assert reference.stats["partner_balance_plain"] == 2

    # A balance event of the partner in the phase in which it funds: a race.
    scenario = Scenario(1, now, [a], ["p"], [first, [_partner_balance("p", 2, "40.00"), both[0]]])
    with pytest.raises(AmbiguousScenario, match="race"):
        Reference(scenario, set(), now)
