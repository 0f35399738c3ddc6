"""The support page's reads on the in-memory database (service_layer/support.py
`SupportReads`), with the semantics of adapters/postgres/support_reads.py: the committed
state only, nothing written."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from service.adapters.memory import MemoryDatabase, Tables
from service.domain import rules
from service.domain.calendar import business_date
from service.domain.explain import customer_timezone
from service.domain.model import Wallet
from service.service_layer.explain_report import (
    DECISION_ROWS,
    RECENT_BUSINESS_DAYS,
    Row,
    Snapshot,
)
from service.service_layer.history import DECISION, business_date_of
from service.service_layer.ports import Claim
from service.service_layer.support import (
    HISTORY_ROWS,
    NOTICE_ROWS,
    BalancePoint,
    CustomerView,
)


def _key(claim: Claim) -> Row:
    t = claim.topup
    return {
        "customer_id": t.customer_id,
        "business_date": t.business_date,
        "payment_method": t.payment_method.value,
        "amount": t.amount,
        "currency": t.currency,
        "phase": claim.phase,
        "result": claim.result,
        "reason": claim.reason,
        "detail": claim.detail,
        "attempts": 0,
        "next_attempt_at": claim.next_attempt_at,
        "stripe_payment_intent_id": None,
        "trigger_event_id": t.trigger_event_id,
        "balance_at_trigger": t.balance_at_trigger,
        "limit_threshold": t.limit_threshold,
        "created_at": None,
    }


def _decisions(t: Tables, customer_id: str) -> list[Row]:
    rows: list[Row] = [
        {
            "outcome": outcome,
            "reason": reason,
            "last_at": at,
            "times": times,
            "method": e.method,
            "business_date": e.business_date,
            "last_event_id": e.event_id,
            "last_topic": e.topic,
            "last_partition": e.partition,
            "last_offset": e.offset,
            "detail": e.detail,
        }
        for (cid, outcome, reason), (e, at, times) in t.decisions.items()
        if cid == customer_id
    ]
    rows.sort(key=lambda r: (r["outcome"], r["reason"]))
    rows.sort(key=lambda r: r["last_at"], reverse=True)
    return rows[:DECISION_ROWS]


def _snapshot(t: Tables, customer_id: str, now: datetime, policy: rules.Policy) -> Snapshot:
    wallet = t.wallets.get(customer_id)
    timezone = customer_timezone(wallet or Wallet(customer_id), policy)
    today = business_date(now, timezone)
    since = today - timedelta(days=RECENT_BUSINESS_DAYS)
    keys = [
        _key(c)
        for c in t.daily_keys
        if c.topup.customer_id == customer_id and c.topup.business_date >= since
    ]
    keys.sort(key=lambda k: k["business_date"], reverse=True)
    partner_id = wallet.settings.partner_id if wallet and wallet.settings else None
    funded = sum(
        1 for w in t.wallets.values() if w.settings and w.settings.partner_id == customer_id
    )
    partner = t.wallets.get(partner_id) if partner_id is not None else None
    return Snapshot(wallet, funded, partner, keys, _decisions(t, customer_id), today, timezone)


def _history(t: Tables, customer_id: str, limit: int) -> list[Row]:
    rows: list[Row] = []
    for i in range(len(t.history) - 1, -1, -1):
        e = t.history[i]
        if e.customer_id != customer_id:
            continue
        rows.append(
            {
                "id": i + 1,
                "at": e.at,
                "kind": e.kind,
                "outcome": e.outcome,
                "reason": e.reason,
                "detail": e.detail,
                "data": dict(e.data),
            }
        )
        if len(rows) == limit:
            break
    return rows


def balance_points(t: Tables, customer_id: str, since: datetime) -> list[BalancePoint]:
    """As support_balance_points: each recorded top-up's balance_at_trigger (at the
    decision's time) and the last balance stored (at its occurred_at), oldest first."""
    at_trigger = {
        (c.topup.customer_id, c.topup.business_date): c.topup.balance_at_trigger
        for c in t.daily_keys
    }
    points: list[BalancePoint] = []
    for e in t.history:
        if e.customer_id != customer_id or e.kind != DECISION or e.at < since:
            continue
        day = business_date_of(e)
        if e.outcome in ("triggered", "failed") and day is not None:
            balance = at_trigger.get((customer_id, day))
            if balance is not None:
                points.append((e.at, balance))
    wallet = t.wallets.get(customer_id)
    b = wallet.balance if wallet is not None else None
    if b is not None and b.occurred_at >= since:
        points.append((b.occurred_at, b.amount))
    points.sort(key=lambda p: p[0])
    return points


class MemorySupportReads:
    def __init__(self, db: MemoryDatabase, notice_topic: str = "auto-topup-notice") -> None:
        self._db = db
        self._notice_topic = notice_topic

    async def customer(
        self, customer_id: str, now: datetime, policy: rules.Policy, chart_since: datetime
    ) -> CustomerView:
        t = self._db.committed
        key = customer_id.encode()
        return CustomerView(
            _snapshot(t, customer_id, now, policy),
            _history(t, customer_id, HISTORY_ROWS),
            balance_points(t, customer_id, chart_since),
            [],  # the in-memory tables keep only the keys of rejected settings events
            [],
            [
                json.loads(r.value)
                for r in reversed(t.outbox)
                if r.topic == self._notice_topic and r.key == key and r.value is not None
            ][:NOTICE_ROWS],
        )

    async def history(self, customer_id: str, limit: int) -> list[Row]:
        return _history(self._db.committed, customer_id, limit)

    async def search(self, prefix: str, limit: int) -> list[str]:
        ids: list[str] = sorted(i for i in self._db.committed.wallets if i.startswith(prefix))
        return ids[:limit]
