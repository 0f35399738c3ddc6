"""The chaos run's verdict (tests/reference/compare.py) says which daily keys it counted."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any, cast

from tests.reference.compare import compare
from tests.reference.contract import Expected, Reference

DAY = date(2026, 3, 9)


def _expected(customer: str, amount: str) -> Expected:
    return Expected("invoice-requested", customer, DAY, amount, "USD", "cheque_tt", "e1", "5.00")


def _published(customer: str, amount: str) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "business_date": DAY.isoformat(),
        "amount": amount,
        "currency": "USD",
        "payment_method": "cheque_tt",
        "trigger_event_id": "e1",
        "balance_at_trigger": "5.00",
    }


def test_each_daily_key_counted_is_described() -> None:
    days = {(c, DAY): _expected(c, "100.00") for c in ("same", "lost", "other")}
    reference = cast(Reference, SimpleNamespace(days=days))
    published = [_published("same", "100.00"), _published("other", "90.00"), _published("new", "1")]
    said: list[str] = []
    counts = compare(reference, published, ["invoice-requested"] * 3, said)
    assert counts == {"lost": 1, "doubled": 0, "divergent": 2}
    assert [line.split(":")[0] for line in said] == [
        "lost lost 2026-03-09",
        "unexpected new 2026-03-09",
        "divergent other 2026-03-09",
    ]
    assert "'amount': ('90.00', '100.00')" in said[-1]
