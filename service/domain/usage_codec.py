"""An exact text form of `Usage` for storage (the bytea column wallets.usage): `pack()` and
`unpack()`. It runs for every balance event of a customer with settings (packed when the wallet
is saved, unpacked when it is locked), so it is built from what CPython does in C: `str` and
`Decimal` of each amount, one `join` and one `split`.

Version 2 (ASCII):

    2 <newest day's date.toordinal()> (;<days before the newest>,<usage>,<lowest balance>)...

oldest day first, each amount as `str(Decimal)`, which `Decimal()` reads back with its sign,
digits and exponent (-0.00 stays -0.00). Eight days of amounts in the thousands take about 150
bytes; a wallet that saw one day, about 25. (Version 1, a packed binary form, was about 50
bytes for eight days but took ten times as long each way: `python -m tests.bench.usage_size`.)
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from service.domain.usage import WINDOW_DAYS, DayUsage, Usage

VERSION = b"2"
# A stored value longer than this is refused as corrupt (eight days of 40-digit amounts fit).
MAX_BYTES = 2048


def _check(days: tuple[DayUsage, ...]) -> None:
    if not days:
        raise ValueError("no days to pack")
    for before, after in pairwise(days):
        if before.day >= after.day:
            raise ValueError("days out of order")
    if (days[-1].day - days[0].day).days > WINDOW_DAYS:
        raise ValueError("a day beyond the window")
    for entry in days:
        if entry.usage.is_signed():
            raise ValueError("a negative usage")
        if not (entry.usage.is_finite() and entry.low.is_finite()):
            raise ValueError("an amount that is not finite")


def pack(usage: Usage) -> bytes:
    """The stored form of `usage`. ValueError for a value `observe()` never builds: no days,
    days out of order or beyond the window, a negative usage, an amount that is not finite."""
    days = usage.days
    _check(days)
    newest = days[-1].day
    parts = [f"2 {newest.toordinal()}"]
    parts += [f"{(newest - d.day).days},{d.usage},{d.low}" for d in days]
    return ";".join(parts).encode("ascii")


def _amount(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError(f"an amount that is not finite: {text!r}")
    return value


def unpack(data: bytes) -> Usage:
    """The `Usage` that `pack()` wrote. ValueError for anything else (another version, a
    malformed or truncated value, days out of order or beyond the window)."""
    if len(data) > MAX_BYTES or not data.startswith(VERSION + b" "):
        raise ValueError("unknown usage format version")
    try:
        head, *entries = data.decode("ascii").split(";")
        newest = date.fromordinal(int(head[2:]))
        days = []
        for entry in entries:
            back, used, low = entry.split(",")
            days.append(DayUsage(newest - timedelta(days=int(back)), _amount(used), _amount(low)))
    except (ValueError, InvalidOperation, OverflowError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed usage value: {e}") from e
    found = tuple(days)
    _check(found)
    if found[-1].day != newest:
        raise ValueError("the last day is not the newest")
    return Usage(found)
