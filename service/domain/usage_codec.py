"""A compact, exact binary form of `Usage` for storage: `pack()` and `unpack()`.

Version 1, in order:

- one byte, the version (1);
- the newest day's `date.toordinal()`, a varint;
- one byte, which days are present: bit i set for the day i days before the newest (bit 0, the
  newest day, is always set), so each day's date costs no byte;
- the common exponent, a zigzag varint: the most frequent exponent of the amounts;
- per day, oldest first, the usage then the lowest balance, each amount its coefficient as a
  scaled integer:
  - the usage (never negative): a varint of `coefficient << 1 | other`, where `other` says that
    the amount's own exponent follows (a zigzag varint) instead of the common one;
  - the lowest balance, at the common exponent (and not -0): a varint of
    `zigzag(value - previous) << 1`, where `value` is the signed scaled integer and `previous`
    that of the day before (0 for the first day, or when that day's low was not plain): lows
    of near days are near, so the difference is small;
  - any other lowest balance: a varint of `(coefficient << 1 | sign) << 1 | 1` then its
    exponent (a zigzag varint), so that -0.00 stays -0.00.

The round trip is exact: every amount comes back with its sign, digits and exponent. Eight
days take 45 to 55 bytes for wallets using up to a few thousand a day, about 70 for 45,000 a
day (`python -m tests.bench.usage_size`).
"""

from __future__ import annotations

from datetime import date
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from itertools import pairwise

from service.domain.usage import WINDOW_DAYS, DayUsage, Usage

VERSION = 1
# The longest varint read back (a guard against corrupt input): 2**448, far above any amount.
_MAX_VARINT_BYTES = 64
# Shifts an amount's decimal point without rounding, whatever its number of digits.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def pack(usage: Usage) -> bytes:
    """The binary form of `usage`. ValueError for a value `observe()` never builds: no days,
    days out of order or beyond the window, a negative usage, an amount that is not finite."""
    days = usage.days
    _check(days)
    newest = days[-1].day
    present = 0
    for entry in days:
        present |= 1 << (newest - entry.day).days
    amounts = [(_parts(entry.usage), _parts(entry.low)) for entry in days]
    common = _common_exponent(amounts)
    out = bytearray((VERSION,))
    _varint(out, newest.toordinal())
    out.append(present)
    _varint(out, _zigzag(common))
    base = 0
    for used, low in amounts:
        _usage(out, used, common)
        base = _low(out, low, common, base)
    return bytes(out)


def unpack(data: bytes) -> Usage:
    """The `Usage` that `pack()` wrote. ValueError for anything else (unknown version,
    truncated or trailing bytes, a day map without the newest day)."""
    reader = _Reader(data)
    if reader.byte() != VERSION:
        raise ValueError("unknown usage format version")
    ordinal = reader.varint()
    try:
        newest = date.fromordinal(ordinal)
    except (ValueError, OverflowError) as e:
        raise ValueError("bad newest day") from e
    present = reader.byte()
    if not present & 1:
        raise ValueError("the day map lacks the newest day")
    common = _unzigzag(reader.varint())
    days = []
    for back in range(WINDOW_DAYS, -1, -1):
        if present >> back & 1:
            day = date.fromordinal(newest.toordinal() - back)
            used = reader.usage(common)
            days.append(DayUsage(day, used, reader.low(common)))
    if not reader.done():
        raise ValueError("trailing bytes after the last day")
    return Usage(tuple(days))


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


# An amount as its sign (1: negative), coefficient (its digits as an integer) and exponent.
_Parts = tuple[int, int, int]


def _parts(amount: Decimal) -> _Parts:
    sign, _, exponent = amount.as_tuple()
    exponent = int(exponent)  # finite: _check() made sure
    return sign, abs(int(amount.scaleb(-exponent, _EXACT))), exponent


def _common_exponent(amounts: list[tuple[_Parts, _Parts]]) -> int:
    """The most frequent exponent (the one nearest 0 of the most frequent)."""
    counts: dict[int, int] = {}
    for used, low in amounts:
        counts[used[2]] = counts.get(used[2], 0) + 1
        counts[low[2]] = counts.get(low[2], 0) + 1
    return max(counts, key=lambda e: (counts[e], -abs(e)))


def _usage(out: bytearray, amount: _Parts, common: int) -> None:
    _, coefficient, exponent = amount
    other = exponent != common
    _varint(out, coefficient << 1 | other)
    if other:
        _varint(out, _zigzag(exponent))


def _low(out: bytearray, amount: _Parts, common: int, base: int) -> int:
    """Writes a lowest balance; returns the base of the next one."""
    sign, coefficient, exponent = amount
    if exponent == common and not (sign and coefficient == 0):
        plain = -coefficient if sign else coefficient
        _varint(out, _zigzag(plain - base) << 1)
        return plain
    _varint(out, (coefficient << 1 | sign) << 1 | 1)
    _varint(out, _zigzag(exponent))
    return 0


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else (-n << 1) - 1


def _unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


class _Reader:
    __slots__ = ("at", "base", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.base = 0  # the previous lowest balance, as an integer at the common exponent

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise ValueError("truncated usage")
        b = self.data[self.at]
        self.at += 1
        return b

    def varint(self) -> int:
        n = 0
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            b = self.byte()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
        raise ValueError("varint too long")

    def usage(self, common: int) -> Decimal:
        n = self.varint()
        exponent = _unzigzag(self.varint()) if n & 1 else common
        return _decimal("", n >> 1, exponent)

    def low(self, common: int) -> Decimal:
        n = self.varint()
        if n & 1:
            sign = "-" if n >> 1 & 1 else ""
            self.base = 0
            return _decimal(sign, n >> 2, _unzigzag(self.varint()))
        self.base += _unzigzag(n >> 1)
        return _decimal("", self.base, common)

    def done(self) -> bool:
        return self.at == len(self.data)


def _decimal(sign: str, coefficient: int, exponent: int) -> Decimal:
    try:
        return Decimal(f"{sign}{coefficient}E{exponent}")  # exact: no context rounding
    except InvalidOperation as e:
        raise ValueError("bad amount") from e
