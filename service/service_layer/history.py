"""The append-only history of each customer (migration 0013, table customer_history).

The batch store writes it in the batch's own transaction, from the same decision log as the
decision summary (`BatchStore.record_decisions`): every line that names a customer, one row
each. The decision summary keeps only the last decision of each kind; the history keeps them
all, for AUTO_TOPUP_RETENTION_HISTORY_DAYS (the retention job prunes it).

A settings event that was applied is logged with the outcome SETTINGS_APPLIED (kind
'settings'). It is not a decision: `merge_decisions` leaves it out of the decision summary
(only RECORDED_OUTCOMES go there), the metrics count only decision outcomes, and a replay
reports only its own outcomes. A settings event that itself leads to a decision (auto-trigger
turned on at a low balance) is logged as that decision instead: one line per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from service.domain.values import value
from service.service_layer.ports import DecisionLog

SETTINGS_APPLIED = "settings_applied"

DECISION = "decision"
SETTINGS = "settings"

# A detail longer than this is cut (as the decision summary cuts it).
DETAIL_CHARS = 1000


@value
class HistoryEntry:
    """One row of customer_history."""

    customer_id: str
    at: datetime
    kind: str  # DECISION | SETTINGS
    outcome: str  # a RecordOutcome, or SETTINGS_APPLIED
    reason: str | None
    detail: str
    data: dict[str, Any]  # JSON: event_id, topic, partition, offset, method, business_date


def _data(e: DecisionLog) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "topic": e.topic,
        "partition": e.partition,
        "offset": e.offset,
        "method": e.method,
        "business_date": e.business_date.isoformat() if e.business_date else None,
    }


def history_entries(entries: Sequence[DecisionLog], at: datetime) -> list[HistoryEntry]:
    """The history rows of one batch's decision log, in the log's order (a line without a
    customer, an undecodable record's, has no customer to file it under)."""
    return [
        HistoryEntry(
            e.customer_id,
            at,
            SETTINGS if e.outcome == SETTINGS_APPLIED else DECISION,
            e.outcome,
            e.reason,
            e.detail[:DETAIL_CHARS],
            _data(e),
        )
        for e in entries
        if e.customer_id is not None
    ]


def business_date_of(entry: HistoryEntry) -> date | None:
    raw = entry.data.get("business_date")
    return date.fromisoformat(raw) if isinstance(raw, str) else None
