"""How much one top-up is (contract v2, "How much"): the amount mode, then `max_amount`, then
what is left of `monthly_cap` this month.

- `fixed`: the Trigger Amount (v1).
- `to_target`: `target_balance - balance_at_trigger`, rounded up to the currency's minor unit
  (for a card, up to the smallest step a card charge of that currency can carry).
- `cover_gap`: the smallest whole multiple of the Trigger Amount that brings the balance above
  the Limit Threshold (at least one).

A cap cuts the amount down (a cut to the month's cap is rounded down to what can be charged,
so the cap is never passed). A top-up cut to nothing, or below Stripe's minimum for a card, is
not made: `monthly_cap_reached`, and the day stays free. Without a cap, an amount a card cannot
take is not made either: `below_card_minimum`, or `above_card_maximum` (Stripe takes at most
99,999,999 minor units). Arithmetic is exact at the contract's 36 digits (`money.WIDE`).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from service.domain.model import AmountMode, Amounts
from service.domain.money import (
    WIDE,
    above_card_maximum,
    card_amount_error,
    card_step,
    minor_unit,
    minus,
    plus,
)
from service.domain.reasons import BlockReason


def _step(currency: str, card: bool) -> Decimal:
    return card_step(currency) if card else minor_unit(currency)


def _steps(amount: Decimal, step: Decimal, rounding: str) -> Decimal:
    """`amount` rounded to a whole number of `step`s, exactly (see money.WIDE)."""
    return WIDE.multiply(WIDE.divide(amount, step).to_integral_value(rounding), step)


def _base(
    amounts: Amounts, trigger_amount: Decimal, threshold: Decimal, balance: Decimal, step: Decimal
) -> Decimal:
    if amounts.mode is AmountMode.TO_TARGET and amounts.target_balance is not None:
        return _steps(minus(amounts.target_balance, balance), step, ROUND_CEILING)
    if amounts.mode is AmountMode.COVER_GAP:
        gap = WIDE.divide(minus(threshold, balance), trigger_amount)
        times = plus(gap.to_integral_value(ROUND_FLOOR), Decimal(1))
        return WIDE.multiply(trigger_amount, max(times, Decimal(1)))
    return trigger_amount


def _card_block(amount: Decimal, currency: str) -> BlockReason | None:
    if card_amount_error(amount, currency) is None:
        return None
    if above_card_maximum(amount, currency):
        return BlockReason.ABOVE_CARD_MAXIMUM
    return BlockReason.BELOW_CARD_MINIMUM


def reckon(
    amounts: Amounts,
    *,
    trigger_amount: Decimal,
    threshold: Decimal,
    balance: Decimal,
    currency: str,
    spent: Decimal,
    card: bool,
) -> Decimal | BlockReason:
    """The amount of a due top-up, or why none is made."""
    step = _step(currency, card)
    amount = _base(amounts, trigger_amount, threshold, balance, step)
    if amounts.max_amount is not None and amount > amounts.max_amount:
        amount = amounts.max_amount
    if amounts.monthly_cap is not None:
        left = minus(amounts.monthly_cap, spent)
        if amount > left:
            # Down to what can be charged: the cap is never passed.
            amount = _steps(left, step, ROUND_FLOOR)
            if amount <= 0 or (card and card_amount_error(amount, currency) is not None):
                return BlockReason.MONTHLY_CAP_REACHED
    if amount <= 0:
        return BlockReason.MONTHLY_CAP_REACHED
    blocked = _card_block(amount, currency) if card else None
    return blocked or amount
