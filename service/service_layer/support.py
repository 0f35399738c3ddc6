"""What the support page shows of a customer (`GET /v1/customers/{id}`), as plain data.

It answers what `auto-topup explain` answers (the same `Snapshot` and `build_report`), and adds
the customer's history (migration 0013), the points of the balance chart, the settings events
the rules rejected, and two lists that stay empty until another change fills them:
`open_invoices` and `notices` (the seam: `extra_sections()`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from service.domain import rules
from service.domain.calendar import day_end
from service.service_layer.explain_report import Report, Row, Snapshot, build_report

HISTORY_ROWS = 50  # history lines in the customer's answer (newest first)
HISTORY_MAX = 500  # the most `/history?limit=N` returns
SEARCH_LIMIT = 20  # customer ids a search returns
CHART_DAYS = 14  # the balance chart's span
DEAD_LETTER_ROWS = 20  # rejected settings events shown
NOTICE_ROWS = 20  # notices shown (newest first)

BalancePoint = tuple[datetime, Decimal]


@dataclass(frozen=True)
class CustomerView:
    """What the database knows of one customer for the page, read in one transaction."""

    snapshot: Snapshot
    history: list[Row]  # newest first: id, at, kind, outcome, reason, detail, data
    points: list[BalancePoint]  # oldest first
    rejected_settings: list[Row]  # newest first: event_id, redrive, reason, rejected_at
    # Requested invoices not paid or void yet, oldest first.
    open_invoices: list[Row] = field(default_factory=list)
    # The customer's last notices (auto-topup-notice events), newest first.
    notices: list[Row] = field(default_factory=list)


class SupportReads(Protocol):
    """The support page's reads (adapters/postgres/support_reads.py, adapters/memory_support.py).
    Read-only: nothing is locked or written."""

    async def customer(
        self, customer_id: str, now: datetime, policy: rules.Policy, chart_since: datetime
    ) -> CustomerView:
        """The snapshot `explain` reads, the last HISTORY_ROWS history lines, the balance
        points from `chart_since` on, and the last rejected settings events."""
        ...

    async def history(self, customer_id: str, limit: int) -> list[Row]:
        """The last `limit` history lines, newest first."""
        ...

    async def search(self, prefix: str, limit: int) -> list[str]:
        """Customer ids that start with `prefix`, in order."""
        ...


def history_line(row: Row) -> Report:
    """One history row as the API shows it."""
    data: Mapping[str, Any] = row["data"] or {}
    topic = data.get("topic")
    return {
        "id": row["id"],
        "at": row["at"],
        "kind": row["kind"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "detail": row["detail"] or None,
        "event_id": data.get("event_id"),
        "method": data.get("method"),
        "business_date": data.get("business_date"),
        "source": None
        if topic is None
        else f"{topic}[{data.get('partition')}]@{data.get('offset')}",
    }


def _card_terms(snap: Snapshot) -> Report | None:
    terms = snap.wallet.card_terms if snap.wallet is not None else None
    if terms is None:
        return None
    return {
        "trigger_amount": terms.trigger_amount,
        "limit_threshold": terms.limit_threshold,
        "currency": terms.currency,
    }


def _daily(report: Report, snap: Snapshot) -> Report:
    wallet = snap.wallet
    return {
        "taken_dates": [k["business_date"] for k in snap.keys],
        "today": snap.today,
        "timezone": snap.timezone,
        "today_taken": report["today"]["key"] is not None,
        # No new top-up before the end of the last attempt's business day (in the timezone that
        # attempt used); None: no attempt recorded.
        "attempt_day_end": wallet.attempt_day_end if wallet is not None else None,
        "next_top_up_not_before": report["next_top_up"]["not_before"],
    }


def daily_lows(snap: Snapshot) -> list[BalancePoint]:
    """The lowest balance of each of the last business days (the advisor's usage), at the end
    of its day in the customer's timezone (capped at now: today's low so far)."""
    wallet = snap.wallet
    if wallet is None or wallet.usage is None:
        return []
    return [(day_end(d.day, snap.timezone), d.low) for d in wallet.usage.days]


def _chart(snap: Snapshot, points: Sequence[BalancePoint], since: datetime) -> Report:
    s = snap.wallet.settings if snap.wallet is not None else None
    b = snap.wallet.balance if snap.wallet is not None else None
    lows = [(min(at, b.occurred_at) if b else at, low) for at, low in daily_lows(snap)]
    merged = sorted({p for p in (*points, *lows) if p[0] >= since}, key=lambda p: p[0])
    return {
        "since": since,
        "threshold": s.limit_threshold if s else None,
        "currency": s.currency if s else (b.currency if b else None),
        "points": [{"at": at, "balance": balance} for at, balance in merged],
        "daily": [
            {"business_date": d.day, "usage": d.usage, "low": d.low}
            for d in (snap.wallet.usage.days if snap.wallet and snap.wallet.usage else ())
        ],
    }


def extra_sections(view: CustomerView) -> Report:
    """Open invoices (Cheque / TT, `max_open_invoices`) and the customer's last notices."""
    return {"open_invoices": view.open_invoices, "notices": view.notices}


def customer_report(
    customer_id: str, view: CustomerView, now: datetime, policy: rules.Policy
) -> Report | None:
    """Everything the page shows of a customer; None for one the database never saw."""
    snap = view.snapshot
    report = build_report(customer_id, snap, now, policy)
    if report is None:
        return None
    lines = [history_line(r) for r in view.history]
    report.update(
        card_terms=_card_terms(snap),
        daily=_daily(report, snap),
        balance_chart=_chart(snap, view.points, chart_since(now)),
        history=lines,
        dead_letters={
            "recent": [h for h in lines if h["outcome"] == "dead_lettered"],
            "rejected_settings": view.rejected_settings,
        },
        **extra_sections(view),
    )
    return report


def chart_since(now: datetime) -> datetime:
    return now - timedelta(days=CHART_DAYS)
