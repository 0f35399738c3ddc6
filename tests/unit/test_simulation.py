"""`service_layer/simulation.py`: a customer's history run through the rules twice, as recorded
and with proposed settings, on fixed instants (no clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import typer
from aiokafka.partitioner import DefaultPartitioner

from service.adapters.kafka.customer_records import partition_for
from service.domain.model import BalanceChanged, Origin, PaymentMethod, SettingsUpdated
from service.domain.reasons import BlockReason, FailureReason
from service.domain.rules import Policy
from service.entrypoints.cli_simulate import PROPOSABLE, proposal_of
from service.service_layer import event_order
from service.service_layer.event_order import Decoded
from service.service_layer.ports import InputRecord
from service.service_layer.simulation import (
    SETTINGS_FIELDS,
    History,
    Proposal,
    Simulation,
    in_event_time,
    simulate,
)
from service.service_layer.simulation_report import to_json
from tests.factories import balance, settings

DAY1 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # every day's events from 09:00 UTC on
DAY = timedelta(days=1)
SINCE = DAY1 - timedelta(hours=1)
UNTIL = DAY1 + 10 * DAY
POLICY = Policy()


def at(day: int, minutes: int = 0) -> datetime:
    """09:00 UTC of day `day` (1 = DAY1), plus `minutes`."""
    return DAY1 + (day - 1) * DAY + timedelta(minutes=minutes)


def cheque_history(customer: str = "c-1") -> History:
    """Threshold 10, trigger 100: below it on day 1 (twice), day 2 and day 4; above on day 3."""
    return History(
        customer,
        [settings(customer, trigger="100.00", threshold="10.00", at=at(1) - timedelta(hours=2))],
        [
            balance(customer, "50.00", at=at(1)),
            balance(customer, "8.00", at=at(1, 10)),
            balance(customer, "5.00", at=at(1, 20)),
            balance(customer, "9.50", at=at(2)),
            balance(customer, "30.00", at=at(3)),
            balance(customer, "10.00", at=at(4)),
        ],
    )


def run(history: History, proposal: Proposal | None = None, since: datetime = SINCE) -> Simulation:
    return simulate(history, POLICY, proposal or {}, since, UNTIL)


def dates(top_ups: object) -> list[date]:
    assert isinstance(top_ups, tuple)
    return [t.business_date for t in top_ups]


def test_as_recorded_a_top_up_on_each_day_at_or_below_the_threshold() -> None:
    sim = run(cheque_history())
    current = sim.current
    assert dates(current.top_ups) == [at(1).date(), at(2).date(), at(4).date()]
    assert {(t.method, t.amount, t.result) for t in current.top_ups} == {
        ("cheque_tt", Decimal("100.00"), "invoice_requested")
    }
    assert current.totals == {"USD": Decimal("300.00")}
    assert current.days_at_or_below_threshold == 3
    assert current.lowest_balance == Decimal("5.00")
    assert current.suppressed == {BlockReason.DAILY_KEY_TAKEN: 1}  # day 1's second low balance
    assert current.blocked == {}
    assert current.notices == ()
    assert sim.proposed == current  # no proposal: the same


def test_a_proposed_trigger_amount_changes_every_amount_and_the_total() -> None:
    proposed = run(cheque_history(), {"trigger_amount": Decimal("250.00")}).proposed
    assert dates(proposed.top_ups) == [at(1).date(), at(2).date(), at(4).date()]
    assert [t.amount for t in proposed.top_ups] == [Decimal("250.00")] * 3
    assert proposed.totals == {"USD": Decimal("750.00")}


def test_a_proposed_threshold_changes_which_days_are_due() -> None:
    sim = run(cheque_history(), {"limit_threshold": Decimal("9.00")})
    assert dates(sim.proposed.top_ups) == [at(1).date()]  # 9.50 and 10.00 are above 9.00
    assert sim.proposed.days_at_or_below_threshold == 1
    higher = run(cheque_history(), {"limit_threshold": Decimal("30.00")}).proposed
    assert dates(higher.top_ups) == [at(d).date() for d in (1, 2, 3, 4)]


def test_auto_trigger_off_blocks_every_due_balance() -> None:
    proposed = run(cheque_history(), {"auto_trigger": False}).proposed
    assert proposed.top_ups == ()
    assert proposed.totals == {}
    assert proposed.blocked == {BlockReason.AUTO_TRIGGER_OFF: 4}
    assert proposed.days_at_or_below_threshold == 3  # the balances are as recorded


def test_shifted_balances_carry_the_difference_of_the_credits() -> None:
    proposal = {"trigger_amount": Decimal("250.00")}
    sim = simulate(cheque_history(), POLICY, proposal, SINCE, UNTIL, shift_balances=True)
    assert dates(sim.current.top_ups) == [at(1).date(), at(2).date(), at(4).date()]
    # Day 1's 250.00 (150.00 more than recorded) lifts day 2's 9.50 to 159.50: no top-up, and
    # so 100.00 less than recorded from then on: day 4's 10.00 shows as 60.00, above too.
    assert dates(sim.proposed.top_ups) == [at(1).date()]
    assert sim.proposed.days_at_or_below_threshold == 1
    assert sim.proposed.lowest_balance == Decimal("8.00")
    assert sim.proposed.suppressed == {}  # day 1's 5.00 shows as 155.00
    assert sim.shift_balances
    report = to_json(sim)
    assert report["shift_balances"] is True
    assert any("credited at once" in line for line in report["assumptions"])
    unshifted = run(cheque_history(), proposal)
    assert dates(unshifted.proposed.top_ups) == [at(1).date(), at(2).date(), at(4).date()]
    assert any("taken as recorded" in line for line in to_json(unshifted)["assumptions"])


def test_records_before_since_build_the_state_but_are_not_counted() -> None:
    since = at(1, 15)  # after day 1's top-up (at 09:10), before its suppressed balance
    sim = run(cheque_history(), {"trigger_amount": Decimal("40.00")}, since=since)
    for scenario in (sim.current, sim.proposed):
        assert dates(scenario.top_ups) == [at(2).date(), at(4).date()]
        # Day 1's key was taken before `since`: the balance after it is suppressed, not a top-up.
        assert scenario.suppressed == {BlockReason.DAILY_KEY_TAKEN: 1}
        assert scenario.lowest_balance == Decimal("5.00")
    # The proposal is laid over the settings in effect at `since` (dated before it).
    assert [t.amount for t in sim.proposed.top_ups] == [Decimal("40.00")] * 2


def test_events_after_until_are_left_out() -> None:
    sim = simulate(cheque_history(), POLICY, {}, SINCE, at(2, 30))
    assert dates(sim.current.top_ups) == [at(1).date(), at(2).date()]


def test_the_proposal_is_laid_over_every_settings_event() -> None:
    c = "c-1"
    history = History(
        c,
        [
            settings(c, trigger="100.00", threshold="10.00", at=at(1) - DAY),
            settings(c, trigger="120.00", threshold="10.00", at=at(3) - timedelta(hours=1)),
        ],
        [balance(c, "5.00", at=at(d)) for d in (1, 2, 3, 4)],
    )
    sim = run(history, {"trigger_amount": Decimal("70.00")})
    recorded = [Decimal("100.00"), Decimal("100.00"), Decimal("120.00"), Decimal("120.00")]
    assert [t.amount for t in sim.current.top_ups] == recorded
    assert [t.amount for t in sim.proposed.top_ups] == [Decimal("70.00")] * 4


def test_settings_come_first_at_the_same_instant() -> None:
    c = "c-1"
    same = at(1)
    history = History(
        c, [settings(c, threshold="10.00", at=same)], [balance(c, "5.00", at=same, event_id="b")]
    )
    order = in_event_time(history)
    assert [type(e) for e in order] == [SettingsUpdated, BalanceChanged]
    assert dates(run(history).current.top_ups) == [same.date()]


def test_the_order_is_the_services() -> None:
    """The same order as the handler's `event_order.in_event_time` for one customer's batch,
    balances out of time order included (each topic keeps its partition's order)."""
    c = "c-1"
    minutes = [5, 1, 3, 3, 9, 0, 7]
    balances = [balance(c, "5.00", at=at(1, m), event_id=f"b{i}") for i, m in enumerate(minutes)]
    changes = [settings(c, at=at(1, m), event_id=f"s{m}") for m in (0, 3, 4, 8, 20)]
    pairs: list[Decoded] = [
        (InputRecord("balances", 0, i, c.encode(), None), e) for i, e in enumerate(balances)
    ]
    pairs += [(InputRecord("settings", 0, i, c.encode(), None), e) for i, e in enumerate(changes)]
    services = [e for _, e in event_order.in_event_time(pairs, "settings")]
    assert in_event_time(History(c, changes, balances)) == services


def test_a_stripe_top_up_counts_as_succeeded_with_the_cards_proposed_amounts() -> None:
    c = "c-1"
    card = ("cus_1", "pm_1")
    online = settings(
        c,
        method=PaymentMethod.STRIPE,
        origin=Origin.ONLINE_TOP_UP,
        trigger="30.00",
        threshold="10.00",
        card=card,
        at=at(1) - DAY,
    )
    history = History(c, [online], [balance(c, "5.00", at=at(d)) for d in (1, 2)])
    sim = run(history, {"trigger_amount": Decimal("45.00"), "limit_threshold": Decimal("6.00")})
    assert [(t.method, t.amount, t.result) for t in sim.current.top_ups] == [
        ("stripe", Decimal("30.00"), "credit_issued")
    ] * 2
    # The card's own amounts come from the online top-up: the proposal is laid over it too.
    assert [t.amount for t in sim.proposed.top_ups] == [Decimal("45.00")] * 2


def test_a_master_account_customer_is_funded_from_the_partners_balance() -> None:
    c, partner = "c-1", "p-1"
    history = History(
        c,
        [
            settings(
                c,
                method=PaymentMethod.MASTER_ACCOUNT,
                partner_id=partner,
                trigger="100.00",
                threshold="10.00",
                at=at(1) - DAY,
            )
        ],
        [balance(c, "5.00", at=at(d)) for d in (1, 2)],
        [balance(partner, "150.00", at=at(1) - timedelta(hours=1))],
    )
    sim = run(history, {"trigger_amount": Decimal("50.00")})
    # 100 reserved on day 1 is not applied to the partner's wallet yet: day 2 cannot be covered.
    assert [(t.result, t.reason) for t in sim.current.top_ups] == [
        ("credit_issued", None),
        ("failed", FailureReason.PARTNER_INSUFFICIENT_FUNDS),
    ]
    assert sim.current.totals == {"USD": Decimal("100.00")}
    assert sim.current.failed == {FailureReason.PARTNER_INSUFFICIENT_FUNDS: 1}
    assert [t.result for t in sim.proposed.top_ups] == ["credit_issued"] * 2
    assert sim.proposed.totals == {"USD": Decimal("100.00")}
    # The partner's own balances are not the customer's: never the lowest balance.
    assert sim.current.lowest_balance == Decimal("5.00")


def test_settings_the_rules_refuse_are_counted_as_rejected() -> None:
    since = at(1) - DAY  # before the settings event
    sim = run(cheque_history(), {"trigger_amount": Decimal("1.001")}, since)  # finer than cents
    assert sim.proposed.rejected == {"invalid_amount_scale": 1}
    assert sim.proposed.top_ups == ()
    assert sim.proposed.blocked == {}  # no settings in effect: nothing is due


def test_a_proposal_names_only_settings_fields() -> None:
    with pytest.raises(ValueError, match="not a proposable settings field: colour"):
        run(cheque_history(), {"colour": "red"})
    with pytest.raises(ValueError, match="event_id"):
        run(cheque_history(), {"event_id": "x"})


def test_the_json_carries_amounts_as_strings() -> None:
    report = to_json(run(cheque_history(), {"trigger_amount": Decimal("250")}))
    assert report["proposal"] == {"trigger_amount": "250"}
    current = report["current"]
    assert current["count"] == 3
    assert current["totals"] == {"USD": "300.00"}
    assert current["lowest_balance"] == "5.00"
    assert current["top_ups"][0] == {
        "business_date": "2026-11-20",
        "method": "cheque_tt",
        "amount": "100.00",
        "currency": "USD",
        "result": "invoice_requested",
        "reason": None,
    }
    assert report["proposed"]["totals"] == {"USD": "750.00"}
    assert report["current"]["notices"] == []


# --- the command's options --------------------------------------------------------------------


def test_every_option_sets_a_settings_field() -> None:
    assert {p.field for p in PROPOSABLE} <= SETTINGS_FIELDS
    assert len({p.field for p in PROPOSABLE}) == len(PROPOSABLE)


def test_amounts_are_parsed_exactly() -> None:
    proposal = proposal_of(
        {"trigger_amount": "100.10", "limit_threshold": "0.1", "auto_trigger": False}
    )
    assert proposal == {
        "trigger_amount": Decimal("100.10"),
        "limit_threshold": Decimal("0.1"),
        "auto_trigger": False,
    }
    assert str(proposal["trigger_amount"]) == "100.10"
    for bad in ("1e3", "abc", "NaN", "0", "-5"):
        with pytest.raises(typer.BadParameter):
            proposal_of({"trigger_amount": bad})
    with pytest.raises(typer.BadParameter):
        proposal_of({"timezone": "Mars/Olympus"})
    assert proposal_of({"timezone": "Asia/Kolkata", "trigger_amount": None}) == {
        "timezone": "Asia/Kolkata"
    }


# --- the partition of a key -------------------------------------------------------------------


def test_the_partition_is_the_default_partitioners() -> None:
    partitioner = DefaultPartitioner()
    for n in (1, 3, 12):
        every = list(range(n))
        for key in (b"c-1", b"cust-0af3", "ü-é".encode(), b""):
            assert partition_for(key, n) == partitioner(key, every, every)
    # The Java client's Utils.murmur2("21".getBytes()) is -973932308: made positive, mod 10.
    assert partition_for(b"21", 10) == (-973932308 & 0x7FFFFFFF) % 10
