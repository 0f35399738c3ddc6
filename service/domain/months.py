"""The months a customer's top-ups count in (`monthly_cap`): the latest month with top-ups and
the one before it. Two, because a change of timezone can date the next event up to 26 hours
back, into the month before, and that month's cap still holds; an older month can no longer be
reached by an event that is due."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from service.domain.model import MonthSpend


def month_of(day: date) -> str:
    """The calendar month (YYYY-MM) a business date counts in."""
    return f"{day.year:04d}-{day.month:02d}"


def record_of(months: MonthSpend | None, key: str) -> MonthSpend | None:
    """The record of month `key`, if it is one of those kept."""
    while months is not None:
        if months.month == key:
            return replace(months, earlier=None)
        months = months.earlier
    return None


def spent_in(months: MonthSpend | None, key: str) -> Decimal:
    """What this service topped up in month `key` (nothing when no record of it is kept)."""
    record = record_of(months, key)
    return record.spent if record is not None else Decimal(0)


def keep(months: MonthSpend | None, record: MonthSpend) -> MonthSpend:
    """The months kept once `record` replaces its month's: the two latest months."""
    others = []
    while months is not None:
        if months.month != record.month:
            others.append(replace(months, earlier=None))
        months = months.earlier
    latest, *rest = sorted([replace(record, earlier=None), *others], key=lambda m: m.month)[::-1]
    return replace(latest, earlier=rest[0] if rest else None)
