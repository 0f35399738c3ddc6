"""What a due top-up does in the batch that decided it: its rail (with its fallback) settles it,
the month's top-ups count it, and the notices it caused are queued. Pure of I/O: the batch
handler persists what this returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from service.config import Topics
from service.contract import messages
from service.domain import rules
from service.domain.model import PaymentMethod, SettingsUpdated, TopUp, Wallet
from service.domain.notices import Notice, spend
from service.domain.rails import ChargeLater, Due, Output, Terms
from service.service_layer.outbox import output_record
from service.service_layer.ports import Claim, OutboxRecord
from service.service_layer.settlement import settled_record


def notice_records(topics: Topics, notices: Iterable[Notice], now: datetime) -> list[OutboxRecord]:
    """The notices as outbox rows (one per customer, type and period: their id dedupes)."""
    return [output_record(topics.auto_topup_notice, messages.notice(n, now)) for n in notices]


def partner_ids(events: Iterable[object], wallets: dict[str, Wallet]) -> set[str]:
    """The partners that pay for these wallets, or that these settings events name."""
    return {partner for _, partner in partner_links(events, wallets)}


def partner_links(events: Iterable[object], wallets: dict[str, Wallet]) -> list[tuple[str, str]]:
    """(customer, partner) for each wallet a partner pays, and each settings event naming one."""
    links = [
        (customer_id, w.settings.partner_id)
        for customer_id, w in wallets.items()
        if w.settings is not None and w.settings.partner_id is not None
    ]
    links += [
        (e.customer_id, e.partner_id)
        for e in events
        if isinstance(e, SettingsUpdated) and e.partner_id is not None
    ]
    return links


@dataclass(frozen=True, slots=True)
class SettledTopUp:
    claim: Claim
    record: OutboxRecord | None  # None: charged later, in phases (the charger publishes)
    changed: tuple[Wallet, ...]  # the customer's wallet (its month) and a partner's, if changed
    notices: tuple[Notice, ...]
    topup: TopUp  # as settled (a fallback step's method and `fallback_from`)


def _cap(wallet: Wallet, policy: rules.Policy) -> Terms | None:
    settings = wallet.settings
    if settings is None:
        return None
    terms = policy.rails.serving(settings).terms(wallet)
    return terms if isinstance(terms, Terms) else None


def settle(
    topup: TopUp,
    wallets: dict[str, Wallet],
    policy: rules.Policy,
    topics: Topics,
    now: datetime,
    trace: tuple[tuple[str, str], ...] = (),
) -> SettledTopUp:
    """Settles a due top-up through the rail of the customer's settings."""
    customer = wallets[topup.customer_id]
    assert customer.settings is not None
    payer = wallets.get(topup.partner_id) if topup.partner_id is not None else None
    credit_id = messages.event_id(topup, messages.CREDIT_ISSUED)
    fallback_credit_id = messages.event_id(
        replace(
            topup, payment_method=PaymentMethod.MASTER_ACCOUNT, fallback_from=topup.payment_method
        ),
        messages.CREDIT_ISSUED,
    )
    due = Due(topup, now, payer, credit_id, policy.credit_hold, customer, fallback_credit_id)
    step = policy.rails.serving(customer.settings).settle(due)
    terms = _cap(customer, policy)
    cap = terms.amounts.monthly_cap if terms is not None else None
    if isinstance(step, ChargeLater):
        # Counted now (the cap is never passed by charges in flight); given back if it fails.
        counted, crossed = spend(customer, topup, cap)
        claim = Claim(topup, "claimed", next_attempt_at=now, trace_headers=trace)
        return SettledTopUp(claim, None, (counted,), crossed, topup)
    settled_topup = step.topup or topup
    changed = list(step.changed)
    notices: tuple[Notice, ...] = ()
    if step.output is not Output.TOP_UP_FAILED:
        counted, notices = spend(customer, settled_topup, cap)
        changed.append(counted)
    claim = Claim(topup, "done", step.result, step.reason, step.detail or None)
    record = settled_record(topics, settled_topup, step, now, trace)
    return SettledTopUp(claim, record, tuple(changed), notices, settled_topup)
