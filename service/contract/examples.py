"""One example of each message, as published in the AsyncAPI document.

tests/unit/test_schemas.py checks each against its schemas, and each output against the model
the service emits it with (and its headers against `cloudevents_headers()`).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from service.contract import messages
from service.contract.codec import notice_event_id, output_event_id
from service.contract.headers import ce_type

Example = dict[str, Any]

CUSTOMER = "c-1001"
DAY = date(2026, 11, 25)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BALANCE_EVENT = "5b1d3f0e-6f1c-4c5e-9a53-0d4f6f1a2b01"
EMITTED_AT = "2026-11-25T10:00:00.250000Z"

WALLET_BALANCE_CHANGED: Example = {
    "event_id": BALANCE_EVENT,
    "occurred_at": "2026-11-25T10:00:00Z",
    "customer_id": CUSTOMER,
    "currency": "USD",
    "balance": "8.50",
    "sequence": 42,
}
SETTINGS_UPDATED: Example = {
    "event_id": "0c8e2f57-3b9d-4d0a-8f5e-2f3c1b7a9d10",
    "occurred_at": "2026-11-24T10:30:00-05:00",
    "customer_id": CUSTOMER,
    "origin": "finance_app",
    "payment_method": "master_account",
    "partner_id": "p-77",
    "auto_trigger": True,
    "trigger_amount": "100.00",
    "limit_threshold": "10.00",
    "currency": "USD",
    "timezone": "America/New_York",
    "version": 7,
}


def _common(name: str, method: str) -> Example:
    return {
        "event_id": output_event_id(CUSTOMER, DAY, name),
        "customer_id": CUSTOMER,
        "business_date": DAY.isoformat(),
        "idempotency_key": f"{CUSTOMER}/{DAY.isoformat()}",
        "trigger_event_id": BALANCE_EVENT,
        "balance_at_trigger": "8.50",
        "limit_threshold": "10.00",
        "amount": "100.00",
        "currency": "USD",
        "payment_method": method,
        "emitted_at": EMITTED_AT,
    }


INVOICE_REQUESTED = _common(messages.INVOICE_REQUESTED, "cheque_tt")
CREDIT_ISSUED = {
    **_common(messages.CREDIT_ISSUED, "stripe"),
    "funding_source": "stripe",
    "stripe_payment_intent_id": "pi_3QkZyA2eZvKYlo2C0a1b2c3d",
}
TOP_UP_FAILED = {
    **_common(messages.TOP_UP_FAILED, "master_account"),
    "reason": "partner_insufficient_funds",
    "detail": "partner p-77 can cover 40.00 USD, the top-up is 100.00 USD",
}
NOTICE = {
    "event_id": notice_event_id(CUSTOMER, "monthly_cap_warning", DAY.isoformat()[:7]),
    "customer_id": CUSTOMER,
    "type": "monthly_cap_warning",
    "period": DAY.isoformat()[:7],
    "emitted_at": EMITTED_AT,
    "currency": "USD",
    "monthly_cap": "500.00",
    "month_total": "400.00",
}
INVOICE_STATUS_CHANGED = {
    "event_id": "0b6f4f7e-9a3c-4d8e-8f00-5c2d1e7a9b31",
    "occurred_at": "2026-11-27T15:30:00Z",
    "customer_id": CUSTOMER,
    "invoice_request_id": output_event_id(CUSTOMER, DAY, messages.INVOICE_REQUESTED),
    "status": "paid",
}
# The dead letter's value is the original bytes: here a balance event without its balance.
DEAD_LETTER_VALUE = json.dumps(
    {k: v for k, v in WALLET_BALANCE_CHANGED.items() if k != "balance"}, separators=(",", ":")
)


def output_headers(name: str, event: Example) -> dict[str, str]:
    return {
        "ce_specversion": messages.CE_SPECVERSION,
        "ce_id": event["event_id"],
        "ce_type": ce_type(name),
        "ce_source": messages.CE_SOURCE,
        "ce_subject": event["customer_id"],
        "ce_time": event["emitted_at"],
        "content-type": "application/json",
        "traceparent": TRACEPARENT,
    }


DEAD_LETTER_HEADERS = {
    "traceparent": TRACEPARENT,
    messages.DLQ_TOPIC: "wallet-balance-changed",
    messages.DLQ_PARTITION: "3",
    messages.DLQ_OFFSET: "18412",
    messages.DLQ_REASON: "schema_violation",
    messages.DLQ_DETAIL: "balance: Field required",
    messages.DLQ_AT: "2026-11-25T10:00:01.125000+00:00",
}


def example(name: str, summary: str, payload: Any, headers: dict[str, str]) -> Example:
    return {"name": name, "summary": summary, "headers": headers, "payload": payload}


def of(topic: str) -> list[Example]:
    """The examples of the message on the topic `topic` (its default name)."""
    outputs = {
        messages.INVOICE_REQUESTED: (
            "cheque-tt",
            "An invoice for a Cheque/TT customer",
            INVOICE_REQUESTED,
        ),
        messages.CREDIT_ISSUED: ("stripe-charge", "A card charged through Stripe", CREDIT_ISSUED),
        messages.TOP_UP_FAILED: ("partner-short", "A partner without the funds", TOP_UP_FAILED),
        messages.AUTO_TOPUP_NOTICE: (
            "cap-warning",
            "The month's top-ups reached 80% of the monthly cap",
            NOTICE,
        ),
    }
    if topic in outputs:
        name, summary, payload = outputs[topic]
        return [example(name, summary, payload, output_headers(topic, payload))]
    inputs = {
        "wallet-balance-changed": (
            "low-balance",
            "A balance at its threshold",
            WALLET_BALANCE_CHANGED,
        ),
        "settings-updated": (
            "cheque-tt",
            "A master account paid by partner p-77",
            SETTINGS_UPDATED,
        ),
        "invoice-status-changed": (
            "paid",
            "The invoice of a top-up was paid",
            INVOICE_STATUS_CHANGED,
        ),
    }
    if topic in inputs:
        name, summary, payload = inputs[topic]
        return [example(name, summary, payload, {"traceparent": TRACEPARENT})]
    return [
        example(
            "missing-balance",
            "A balance event without its balance",
            DEAD_LETTER_VALUE,
            DEAD_LETTER_HEADERS,
        )
    ]
