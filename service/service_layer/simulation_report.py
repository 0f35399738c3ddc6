"""A simulation (`service_layer/simulation.py`) as one JSON-ready value: what `auto-topup
simulate --json` prints, and what its table shows. Amounts are strings (exact decimals, at the
currency's scale for top-ups and totals, as the output events carry them)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from service.domain.money import format_amount
from service.service_layer.simulation import Scenario, SimulatedTopUp, Simulation

# What a simulation cannot know, said with every result.
ASSUMPTIONS = (
    "a Stripe top-up's charge is counted as succeeded (its outcome is unknown to a simulation)",
    "each event is decided as if processed at once (now = its occurred_at)",
)
AS_RECORDED = (
    "balances are taken as recorded: other top-up amounts would have changed later balances, "
    "which a simulation does not know (--shift-balances estimates it)"
)
SHIFTED = (
    "the proposed run's balances are moved by its credits less the recorded run's, as if every "
    "top-up had been credited at once (an estimate; a partner's balances are as recorded)"
)


def assumptions(shift_balances: bool) -> list[str]:
    """What a simulation cannot know, for this run."""
    return [*ASSUMPTIONS, SHIFTED if shift_balances else AS_RECORDED]


def _top_up(t: SimulatedTopUp) -> dict[str, Any]:
    return {
        "business_date": t.business_date.isoformat(),
        "method": t.method,
        "amount": format_amount(t.amount, t.currency),
        "currency": t.currency,
        "result": t.result,
        "reason": t.reason,
    }


def _counts(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def scenario_json(s: Scenario) -> dict[str, Any]:
    return {
        "top_ups": [_top_up(t) for t in s.top_ups],
        "count": len(s.paid),
        "totals": {c: format_amount(a, c) for c, a in sorted(s.totals.items())},
        "days_at_or_below_threshold": s.days_at_or_below_threshold,
        "lowest_balance": None if s.lowest_balance is None else f"{s.lowest_balance:f}",
        "suppressed": _counts(s.suppressed),
        "blocked": _counts(s.blocked),
        "failed": _counts(s.failed),
        "rejected": _counts(s.rejected),
        "notices": list(s.notices),
    }


def _proposed_value(v: object) -> object:
    if isinstance(v, Decimal):
        return f"{v:f}"
    if v is None or isinstance(v, bool | int):
        return v
    return str(v)


def to_json(sim: Simulation) -> dict[str, Any]:
    return {
        "customer_id": sim.customer_id,
        "from": sim.since.isoformat(),
        "to": sim.until.isoformat(),
        "proposal": {k: _proposed_value(v) for k, v in sim.proposal.items()},
        "shift_balances": sim.shift_balances,
        "current": scenario_json(sim.current),
        "proposed": scenario_json(sim.proposed),
        "assumptions": assumptions(sim.shift_balances),
    }
