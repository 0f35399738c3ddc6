"""Business dates: the date of an instant in the customer's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def is_valid_timezone(name: str) -> bool:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def business_date(at: datetime, timezone: str) -> date:
    """The calendar date of `at` in `timezone` (DST and half-hour offsets included)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: an instant needs an offset")
    return at.astimezone(zone(timezone)).date()


def day_end(day: date, timezone: str) -> datetime:
    """The instant (UTC) at which business date `day` ends in `timezone`: the start of the
    next day there (where midnight is skipped by a DST change, the instant of the change)."""
    start = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone(timezone))
    return start.astimezone(UTC)
