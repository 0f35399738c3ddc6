"""Notices (contract v2, `auto-topup-notice`): what a person should hear about, one per
customer, type and period. Pure: the rules and the handlers decide them, the outbox publishes
them under an id derived from (customer_id, type, period), so a notice decided twice is
published once."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from service.domain.model import MonthSpend, TopUp, Wallet
from service.domain.money import minus, plus
from service.domain.months import keep, month_of, record_of
from service.domain.reasons import NoticeType
from service.domain.values import value

# monthly_cap_warning: the month's top-ups reached this share of the cap.
CAP_WARNING_SHARE = Decimal("0.8")


@value
class Notice:
    customer_id: str
    type: NoticeType
    period: str  # a date (YYYY-MM-DD) or a month (YYYY-MM)
    currency: str | None = None
    monthly_cap: Decimal | None = None
    month_total: Decimal | None = None
    reason: str | None = None  # stripe_paused
    invoice_request_id: str | None = None  # invoice_overdue
    amount: Decimal | None = None  # invoice_overdue
    open_days: int | None = None  # invoice_overdue
    trigger_amount: Decimal | None = None  # trigger_amount_too_low
    observed_daily_usage: Decimal | None = None
    recommended_trigger_amount: Decimal | None = None


def _cap_notice(
    wallet: Wallet, kind: NoticeType, month: MonthSpend, cap: Decimal, currency: str
) -> Notice:
    return Notice(
        wallet.customer_id,
        kind,
        month.month,
        currency=currency,
        monthly_cap=cap,
        month_total=month.spent,
    )


def _cap_crossed(
    wallet: Wallet, month: MonthSpend, cap: Decimal | None, currency: str, blocked: bool
) -> tuple[Wallet, tuple[Notice, ...]]:
    if cap is None:
        return replace(wallet, month=keep(wallet.month, month)), ()
    due: list[NoticeType] = []
    if month.spent >= cap * CAP_WARNING_SHARE:
        due.append(NoticeType.MONTHLY_CAP_WARNING)
    if month.spent >= cap or blocked:
        due.append(NoticeType.MONTHLY_CAP_REACHED)
    fresh = [kind for kind in due if kind not in month.notices]
    if not fresh:
        return replace(wallet, month=keep(wallet.month, month)), ()
    noted = replace(month, notices=month.notices | frozenset(fresh))
    notices = tuple(_cap_notice(wallet, kind, month, cap, currency) for kind in fresh)
    return replace(wallet, month=keep(wallet.month, noted)), notices


def spend(wallet: Wallet, topup: TopUp, cap: Decimal | None) -> tuple[Wallet, tuple[Notice, ...]]:
    """The wallet with a made top-up counted in its month (an invoice requested, a credit issued,
    or a card charge not settled yet), and the cap notices it crossed."""
    key = month_of(topup.business_date)
    record = record_of(wallet.month, key) or MonthSpend(key, Decimal(0))
    month = replace(record, spent=plus(record.spent, topup.amount))
    return _cap_crossed(wallet, month, cap, topup.currency, blocked=False)


def give_back(wallet: Wallet, topup: TopUp) -> Wallet:
    """The wallet with a counted top-up that failed taken out of its month (a declined card)."""
    month = record_of(wallet.month, month_of(topup.business_date))
    if month is None:
        return wallet
    back = replace(month, spent=max(minus(month.spent, topup.amount), Decimal(0)))
    return replace(wallet, month=keep(wallet.month, back))


def cap_blocked(
    wallet: Wallet, day: date, cap: Decimal | None, currency: str
) -> tuple[Wallet, tuple[Notice, ...]]:
    """A top-up the cap stopped: the month's `monthly_cap_reached` notice, once. The month's
    record is kept even when the cap is None (settings changed), so the chain stays whole."""
    key = month_of(day)
    month = record_of(wallet.month, key) or MonthSpend(key, Decimal(0))
    return _cap_crossed(wallet, month, cap, currency, blocked=True)
