"""The Trigger Amount advisor's cost: packed size of `Usage`, and the time of one `observe()`.

    python -m tests.bench.usage_size [--number 20000] [--repeat 5]

Sizes are exact. Times are the CPU time of the best of `--repeat` runs of `--number` calls
each, printed as a
RATIO to a baseline measured in the same run (building one `BalanceChanged`, which the service
does for every balance event), so the figures compare across machines; the nanoseconds are
printed too, for reading only. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from service.domain.model import BalanceChanged
from service.domain.usage import WINDOW_DAYS, DayUsage, Usage, observe
from service.domain.usage_codec import pack

DAY = date(2026, 11, 25)
AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def observed(balances_per_day: list[list[Decimal]]) -> Usage:
    u: Usage | None = None
    previous: Decimal | None = None
    for i, balances in enumerate(balances_per_day):
        for balance in balances:
            u = observe(u, DAY + timedelta(days=i), previous, balance)
            previous = balance
    assert u is not None
    return u


def typical(top: str, daily: str, days: int = WINDOW_DAYS + 1) -> Usage:
    """A wallet topped up to `top` whenever it falls below half of it, using about `daily` a
    day in four uneven spends (amounts at the scale of `daily`)."""
    full, use = Decimal(top), Decimal(daily)
    spends = [use * Decimal(share) for share in ("0.17", "0.31", "0.23", "0.29")]
    balance = full
    history = []
    for _ in range(days):
        today = []
        for spend in spends:
            balance = (balance - spend).quantize(use)
            today.append(balance)
            if balance < full / 2:
                balance = full
                today.append(balance)
        history.append(today)
    return observed(history)


def cases() -> dict[str, Usage]:
    """Typical histories (as `observe` builds them) and the worst ones `pack` accepts."""
    days = WINDOW_DAYS + 1
    card_max = Decimal("999999.99")
    return {
        "1 day, USD (usage ~45, balance ~300)": typical("300.00", "45.67", 1),
        "8 days, USD (usage ~45, balance ~300)": typical("300.00", "45.67"),
        "8 days, USD (usage ~1,300, balance ~10,000)": typical("10000.00", "1311.11"),
        "8 days, USD (usage ~45,000, balance ~250,000)": typical("250000.00", "45678.91"),
        "8 days, JPY (usage ~4,500, balance ~30,000)": typical("30000", "4567"),
        "8 days, KWD (usage ~45, balance ~300)": typical("300.000", "45.678"),
        "worst: 8 days at the card maximum, negative lows": Usage(
            tuple(
                DayUsage(DAY + timedelta(days=i), card_max * 10, -card_max * (i % 2))
                for i in range(days)
            )
        ),
        "worst: 8 days of 18+18-digit amounts, each its own exponent": Usage(
            tuple(
                DayUsage(
                    DAY + timedelta(days=i),
                    Decimal("111111111111111111.111111111111111111").scaleb(-i),
                    Decimal("-999999999999999999.999999999999999999").scaleb(i),
                )
                for i in range(days)
            )
        ),
    }


def best_ns(call: Callable[[], object], number: int, repeat: int) -> float:
    """CPU time per call, the best of `repeat` runs: CPU time, not wall time, so that other
    processes on the machine disturb it less."""
    timer = timeit.Timer(call, timer=time.process_time)
    return min(timer.repeat(number=number, repeat=repeat)) / number * 1e9


def timings() -> dict[str, Callable[[], object]]:
    week = typical("300.00", "45.67")
    newest = week.days[-1].day
    balance, lower, higher = Decimal("254.33"), Decimal("241.10"), Decimal("300.00")
    return {
        "observe: a decrease on the newest day": lambda: observe(week, newest, balance, lower),
        "observe: an increase (no change, same value)": lambda: observe(
            week, newest, balance, higher
        ),
        "observe: a new day (drops the oldest)": lambda: observe(
            week, newest + timedelta(days=1), balance, lower
        ),
        "observe: a late event, 4 days back": lambda: observe(
            week, newest - timedelta(days=4), balance, lower
        ),
        "observe: the first balance": lambda: observe(None, newest, None, balance),
        "pack: 8 days": lambda: pack(week),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    print("packed size")
    for name, usage in cases().items():
        print(f"  {len(pack(usage)):4d} bytes  {name}")

    amount = Decimal("2454.33")

    def baseline() -> BalanceChanged:
        return BalanceChanged("event-1", AT, "cust-1", "USD", amount, 7, None)

    base = best_ns(baseline, args.number, args.repeat)
    print(f"\ntime per call, as a ratio to building one BalanceChanged ({base:.0f} ns here)")
    for name, call in timings().items():
        ns = best_ns(call, args.number, args.repeat)
        print(f"  {ns / base:5.2f} x  ({ns:6.0f} ns)  {name}")


if __name__ == "__main__":
    main()
