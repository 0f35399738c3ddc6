from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from service.domain.calendar import business_date, is_valid_timezone
from service.domain.money import (
    card_minor_units,
    fits_card_amount,
    fits_minor_units,
    format_amount,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("100.00", "USD", 10000),
        ("1500", "JPY", 1500),
        ("12.345", "KWD", 12345),
        ("0.01", "EUR", 1),
        ("7", "KWD", 7000),
    ],
)
def test_minor_units(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("100", "USD", "100.00"),
        ("1500", "JPY", "1500"),
        ("1.5", "KWD", "1.500"),
        ("-0.001", "USD", "0.00"),
        ("-12.5", "USD", "-12.50"),
        ("1E+2", "USD", "100.00"),
    ],
)
def test_output_amounts_use_the_currency_scale(amount: str, currency: str, text: str) -> None:
    assert format_amount(Decimal(amount), currency) == text


@pytest.mark.parametrize(
    ("amount", "currency", "fits"),
    [
        ("10.00", "USD", True),
        ("10.001", "USD", False),
        ("10.5", "JPY", False),
        ("10", "JPY", True),
        ("1.234", "KWD", True),
        ("1.2345", "KWD", False),
        ("10.10", "USD", True),
        ("10.100", "USD", True),
    ],
)
def test_fits_minor_units(amount: str, currency: str, fits: bool) -> None:
    assert fits_minor_units(Decimal(amount), currency) is fits


def test_business_date_in_half_hour_zone() -> None:
    # 18:29 UTC is 23:59 in Kolkata (+05:30); 18:30 UTC is already the next day.
    assert business_date(datetime(2026, 11, 25, 18, 29, tzinfo=UTC), "Asia/Kolkata") == date(
        2026, 11, 25
    )
    assert business_date(datetime(2026, 11, 25, 18, 30, tzinfo=UTC), "Asia/Kolkata") == date(
        2026, 11, 26
    )


def test_business_date_across_new_york_dst_change() -> None:
    # DST ends 2026-11-01 at 02:00 EDT: midnight is 04:00 UTC before, 05:00 UTC after.
    assert business_date(datetime(2026, 11, 1, 3, 59, tzinfo=UTC), "America/New_York") == date(
        2026, 10, 31
    )
    assert business_date(datetime(2026, 11, 1, 4, 0, tzinfo=UTC), "America/New_York") == date(
        2026, 11, 1
    )
    assert business_date(datetime(2026, 11, 2, 4, 59, tzinfo=UTC), "America/New_York") == date(
        2026, 11, 1
    )
    assert business_date(datetime(2026, 11, 2, 5, 0, tzinfo=UTC), "America/New_York") == date(
        2026, 11, 2
    )


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        business_date(datetime(2026, 11, 25, 12, 0), "UTC")


def test_timezone_names() -> None:
    assert is_valid_timezone("Europe/Paris")
    assert not is_valid_timezone("Mars/Olympus")
    assert not is_valid_timezone("../../etc/passwd")


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("100.00", "USD", 10000),
        ("5000", "JPY", 5000),
        ("1000", "MGA", 1000),
        ("500", "ISK", 50000),
        ("12.340", "KWD", 12340),
        ("7", "UGX", 7),
    ],
)
def test_card_amounts_in_stripe_units(amount: str, currency: str, minor: int) -> None:
    assert card_minor_units(Decimal(amount), currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency", "ok"),
    [
        ("12.340", "KWD", True),
        ("12.345", "KWD", False),
        ("500", "ISK", True),
        ("10.50", "MGA", False),
        ("10.5", "USD", True),
        ("10.005", "USD", False),
    ],
)
def test_what_a_card_can_be_charged(amount: str, currency: str, ok: bool) -> None:
    assert fits_card_amount(Decimal(amount), currency) is ok
