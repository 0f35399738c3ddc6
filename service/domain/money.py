"""Money: exact decimals, ISO 4217 minor units."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)

# ISO 4217 minor-unit exponents that differ from 2. Every other code uses 2.
_EXPONENTS: dict[str, int] = {
    # zero-decimal
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0,
    # three-decimal
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four-decimal
    "CLF": 4, "UYW": 4,
}  # fmt: skip


# Money arithmetic is exact: an amount of the contract has up to 36 digits (18 before and 18
# after the point), more than the default context's 28, and the sum or difference of two needs
# 37. This context keeps every digit of those (and of a quotient that is floored to a whole
# number next), whatever the thread's own context is.
WIDE = Context(
    prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)


def plus(a: Decimal, b: Decimal) -> Decimal:
    return WIDE.add(a, b)


def minus(a: Decimal, b: Decimal) -> Decimal:
    return WIDE.subtract(a, b)


def total(amounts: Iterable[Decimal]) -> Decimal:
    result = Decimal(0)
    for amount in amounts:
        result = WIDE.add(result, amount)
    return result


def minor_unit_exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (USD 2, JPY 0, KWD 3)."""
    return _EXPONENTS.get(currency, 2)


def fits_minor_units(amount: Decimal, currency: str) -> bool:
    """True when the amount has no more decimals than the currency allows."""
    return amount == quantize(amount, currency)


def quantize(amount: Decimal, currency: str) -> Decimal:
    """The amount at the currency's scale, rounded half-even where it has more decimals."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit_exponent(currency)), ROUND_HALF_EVEN)


def format_amount(amount: Decimal, currency: str) -> str:
    """Wire form of an output amount: a plain string at the currency's scale ("-0.00" is "0.00")."""
    scaled = quantize(amount, currency)
    return f"{scaled.copy_abs() if scaled.is_zero() else scaled:f}"


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Integer amount in the currency's minor units, as Stripe wants it."""
    return int(quantize(amount, currency).scaleb(minor_unit_exponent(currency)))


# Card payments (Stripe) count some currencies differently from ISO 4217:
# - zero-decimal for Stripe, whatever ISO says (MGA is two-decimal in ISO);
_CARD_ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
})  # fmt: skip
# - zero-decimal in fact, but sent as two-decimal amounts whose decimals are always 00;
_CARD_WHOLE_TWO_DECIMAL = frozenset({"ISK"})
# - three-decimal, but the last digit must be 0.
_CARD_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def _card_exponent(currency: str) -> int:
    if currency in _CARD_ZERO_DECIMAL:
        return 0
    if currency in _CARD_THREE_DECIMAL:
        return 3
    return 2


def minor_unit(currency: str) -> Decimal:
    """One minor unit of the currency (USD 0.01, JPY 1, KWD 0.001)."""
    return Decimal(1).scaleb(-minor_unit_exponent(currency))


def card_step(currency: str) -> Decimal:
    """The smallest step of an amount a card charge can carry exactly (USD 0.01, JPY 1, ISK 1,
    KWD 0.010)."""
    if currency in _CARD_ZERO_DECIMAL or currency in _CARD_WHOLE_TWO_DECIMAL:
        return Decimal(1)
    return Decimal("0.01")


def fits_card_amount(amount: Decimal, currency: str) -> bool:
    """True when a card charge can carry exactly this amount."""
    if currency in _CARD_ZERO_DECIMAL or currency in _CARD_WHOLE_TWO_DECIMAL:
        step = Decimal(1)
    else:
        step = Decimal("0.01")  # two-decimal, and three-decimal ending in 0
    return amount == amount.quantize(step, ROUND_HALF_EVEN) and fits_minor_units(amount, currency)


def card_minor_units(amount: Decimal, currency: str) -> int:
    """The integer amount a card charge (Stripe's `amount`) carries for this currency."""
    exponent = _card_exponent(currency)
    return int(amount.quantize(Decimal(1).scaleb(-exponent), ROUND_HALF_EVEN).scaleb(exponent))


# Stripe's minimum charge per presentment currency (docs.stripe.com/currencies, "Minimum and
# maximum charge amounts"). For a currency not listed, Stripe asks that the amount convert to at
# least 0.50 USD, which needs an exchange rate: only one minor unit is checked here, and Stripe
# itself declines a smaller charge (the attempt then fails with Stripe's reason).
STRIPE_MINIMUM_CHARGE: dict[str, Decimal] = {
    "USD": Decimal("0.50"), "AED": Decimal("2.00"), "AUD": Decimal("0.50"),
    "BGN": Decimal("1.00"), "BRL": Decimal("0.50"), "CAD": Decimal("0.50"),
    "CHF": Decimal("0.50"), "CZK": Decimal("15.00"), "DKK": Decimal("2.50"),
    "EUR": Decimal("0.50"), "GBP": Decimal("0.30"), "HKD": Decimal("4.00"),
    "HUF": Decimal("175.00"), "INR": Decimal("0.50"), "JPY": Decimal("50"),
    "MXN": Decimal("10"), "MYR": Decimal("2"), "NOK": Decimal("3.00"), "NZD": Decimal("0.50"),
    "PLN": Decimal("2.00"), "RON": Decimal("2.00"), "SEK": Decimal("3.00"),
    "SGD": Decimal("0.50"), "THB": Decimal("10"),
}  # fmt: skip
# The largest `amount` a PaymentIntent takes: eight digits of the currency's card minor unit.
STRIPE_MAXIMUM_MINOR_UNITS = 99_999_999


def above_card_maximum(amount: Decimal, currency: str) -> bool:
    """True when a card charge of `amount` is more than Stripe takes in one PaymentIntent."""
    return card_minor_units(amount, currency) > STRIPE_MAXIMUM_MINOR_UNITS


def card_amount_error(amount: Decimal, currency: str) -> str | None:
    """Why a card cannot be charged exactly `amount` (None when it can): the currency's
    scale, Stripe's minimum charge, and its maximum of 99,999,999 minor units."""
    if not fits_card_amount(amount, currency):
        return f"a card cannot be charged exactly {amount} {currency}"
    minimum = STRIPE_MINIMUM_CHARGE.get(currency)
    if minimum is not None and amount < minimum:
        return f"{amount} {currency} is below Stripe's minimum charge of {minimum} {currency}"
    minor = card_minor_units(amount, currency)
    if minor < 1:
        return f"{amount} {currency} is less than one minor unit"
    if minor > STRIPE_MAXIMUM_MINOR_UNITS:
        return (
            f"{amount} {currency} is above Stripe's maximum charge "
            f"({STRIPE_MAXIMUM_MINOR_UNITS:,} minor units)"
        )
    return None
