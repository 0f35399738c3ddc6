"""Building the outgoing records: output events and dead letters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final

from service.contract.codec import notice_event_id, output_event_id
from service.contract.events import (
    AutoTopupNotice,
    CreditIssued,
    InvoiceRequested,
    OutputEvent,
    TopUpFailed,
)
from service.domain.model import TopUp
from service.domain.money import format_amount
from service.domain.notices import Notice

INVOICE_REQUESTED: Final = "invoice-requested"
CREDIT_ISSUED: Final = "credit-issued"
TOP_UP_FAILED: Final = "top-up-failed"
AUTO_TOPUP_NOTICE: Final = "auto-topup-notice"

# CloudEvents attributes of every output event (Kafka protocol binding, binary mode).
CE_SPECVERSION: Final = "1.0"
CE_SOURCE: Final = "/auto-topup"
CE_TYPE_PREFIX: Final = "com.auto-topup."
CE_TYPE_VERSION: Final = ".v1"


def ce_type(event: OutputEvent) -> str:
    """e.g. com.auto-topup.invoice-requested.v1 (the event's name in the contract)."""
    return f"{CE_TYPE_PREFIX}{type(event).model_config['title']}{CE_TYPE_VERSION}"


# Headers of a dead-letter record (its value and key are the original ones, unchanged up to
# 64 KiB each).
DLQ_TOPIC: Final = "dlq_original_topic"
DLQ_PARTITION: Final = "dlq_original_partition"
DLQ_OFFSET: Final = "dlq_original_offset"
DLQ_REASON: Final = "dlq_reason"
DLQ_DETAIL: Final = "dlq_detail"
DLQ_AT: Final = "dlq_dead_lettered_at"
# Since v2, so that no dead letter is too big to publish: a value over the input limit (64 KiB)
# is kept as its first 64 KiB, and these say so ("true", the original size in bytes as decimal
# text, the original's SHA-256 as lowercase hex).
DLQ_TRUNCATED: Final = "dlq_truncated"
DLQ_ORIGINAL_SIZE: Final = "dlq_original_size"
DLQ_ORIGINAL_SHA256: Final = "dlq_original_sha256"
# Likewise for a key over 64 KiB (the contract's key is a customer_id, at most 128 characters).
DLQ_KEY_TRUNCATED: Final = "dlq_key_truncated"
DLQ_ORIGINAL_KEY_SIZE: Final = "dlq_original_key_size"
DLQ_ORIGINAL_KEY_SHA256: Final = "dlq_original_key_sha256"
# The original headers are kept while they add up to at most 64 KiB; this counts those left out.
DLQ_HEADERS_DROPPED: Final = "dlq_headers_dropped"

# The header `auto-topup dlq redrive` adds to each record it publishes again: where its dead
# letter was read (topic/partition/offset). A settings event the rules rejected is judged again
# once per redrive of it (a redelivery of the redriven record is a repeat, as any other).
REDRIVE: Final = "auto_topup_redrive"


def event_id(topup: TopUp, event_type: str) -> str:
    """The deterministic id of the `event_type` event of this top-up's daily key; a fallback
    step's adds its method (`<daily key>|<event type>|<method>`, contract v2)."""
    if topup.fallback_from is not None:
        event_type = f"{event_type}|{topup.payment_method.value}"
    return output_event_id(topup.customer_id, topup.business_date, event_type)


def _common(topup: TopUp, event_type: str, now: datetime) -> dict[str, object]:
    return {
        "event_id": event_id(topup, event_type),
        "customer_id": topup.customer_id,
        "business_date": topup.business_date,
        "idempotency_key": topup.idempotency_key,
        "trigger_event_id": topup.trigger_event_id,
        "balance_at_trigger": format_amount(topup.balance_at_trigger, topup.currency),
        "limit_threshold": format_amount(topup.limit_threshold, topup.currency),
        "amount": format_amount(topup.amount, topup.currency),
        "currency": topup.currency,
        "payment_method": topup.payment_method.value,
        "emitted_at": now,
        "amount_mode": topup.amount_mode.value,
        "fallback_from": topup.fallback_from.value if topup.fallback_from else None,
    }


def invoice_requested(topup: TopUp, now: datetime) -> InvoiceRequested:
    return InvoiceRequested.model_validate(_common(topup, INVOICE_REQUESTED, now))


def credit_from_partner(topup: TopUp, now: datetime) -> CreditIssued:
    return CreditIssued.model_validate(
        {
            **_common(topup, CREDIT_ISSUED, now),
            "funding_source": "master_account",
            "partner_id": topup.partner_id,
        }
    )


def credit_from_stripe(topup: TopUp, payment_intent_id: str, now: datetime) -> CreditIssued:
    return CreditIssued.model_validate(
        {
            **_common(topup, CREDIT_ISSUED, now),
            "funding_source": "stripe",
            "stripe_payment_intent_id": payment_intent_id,
        }
    )


def top_up_failed(topup: TopUp, reason: str, detail: str, now: datetime) -> TopUpFailed:
    return TopUpFailed.model_validate(
        {**_common(topup, TOP_UP_FAILED, now), "reason": reason, "detail": detail}
    )


def _amount(value: Decimal | None, currency: str | None) -> str | None:
    return None if value is None or currency is None else format_amount(value, currency)


def notice(n: Notice, now: datetime) -> AutoTopupNotice:
    """The notice as its event, under the id of (customer_id, type, period)."""
    c = n.currency
    return AutoTopupNotice.model_validate(
        {
            "event_id": notice_event_id(n.customer_id, n.type.value, n.period),
            "customer_id": n.customer_id,
            "type": n.type.value,
            "period": n.period,
            "emitted_at": now,
            "currency": c,
            "monthly_cap": _amount(n.monthly_cap, c),
            "month_total": _amount(n.month_total, c),
            "reason": n.reason,
            "invoice_request_id": n.invoice_request_id,
            "amount": _amount(n.amount, c),
            "open_days": n.open_days,
            "trigger_amount": _amount(n.trigger_amount, c),
            "observed_daily_usage": _amount(n.observed_daily_usage, c),
            "recommended_trigger_amount": _amount(n.recommended_trigger_amount, c),
        }
    )


def encode(event: OutputEvent) -> bytes:
    return event.model_dump_json(exclude_none=True).encode("utf-8")
