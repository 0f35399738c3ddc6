"""How much one top-up may be under the contract (v2, "How much"), as bounds to check the
service's amount against: written from the contract, importing nothing from service/."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

# The currencies the property tests use, and their minor units (ISO 4217).
_MINOR = {"USD": Decimal("0.01"), "JPY": Decimal(1), "KWD": Decimal("0.001")}


def base_amount(fields: dict[str, Any], balance: Decimal, threshold: Decimal) -> Decimal:
    """The amount before the caps: the Trigger Amount, up to the target, or enough multiples
    of the Trigger Amount to lift the balance above the threshold."""
    trigger = Decimal(str(fields["trigger_amount"]))
    mode = fields.get("amount_mode", "fixed")
    if mode == "to_target":
        unit = _MINOR[fields.get("currency", "USD")]
        gap = Decimal(str(fields["target_balance"])) - balance
        return Decimal(math.ceil(gap / unit)) * unit
    if mode == "cover_gap":
        times = 1
        while balance + trigger * times <= threshold:
            times += 1
        return trigger * times
    return trigger


def within_bounds(
    amount: Decimal, fields: dict[str, Any], balance: Decimal, threshold: Decimal, spent: Decimal
) -> str | None:
    """Why `amount` is not what the settings allow, given `spent` already this month (None
    when it is). A card may be charged more than the minor unit's rounding of a target, up to
    its own step: a cent of slack is allowed for to_target."""
    base = base_amount(fields, balance, threshold)
    slack = Decimal("0.01") if fields.get("amount_mode") == "to_target" else Decimal(0)
    if amount <= 0:
        return f"amount {amount} is not positive"
    if amount > base + slack:
        return f"amount {amount} above what the mode gives ({base})"
    limit = fields.get("max_amount")
    if limit is not None and amount > Decimal(str(limit)):
        return f"amount {amount} above max_amount {limit}"
    cap = fields.get("monthly_cap")
    if cap is not None and spent + amount > Decimal(str(cap)):
        return f"the month's top-ups {spent} + {amount} pass monthly_cap {cap}"
    if limit is None and cap is None and amount < base:
        return f"amount {amount} below what the mode gives ({base}) with no cap"
    return None
