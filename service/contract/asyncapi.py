"""The AsyncAPI document of the contract, rendered by FastStream from the event models."""

from __future__ import annotations

import json
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from service.config import Topics
from service.contract import events

DEAD_LETTER_DESCRIPTION = (
    "An input message that could not be accepted. Key and value are the original message's, "
    "byte for byte, so that a redrive can publish it back as it was. Headers: "
    "dlq_original_topic, dlq_original_partition, dlq_original_offset, dlq_reason (a stable "
    "snake_case code), dlq_detail (human-readable), dlq_dead_lettered_at (RFC 3339); the "
    "original message's own headers are kept as well."
)


def document(topics: Topics | None = None, version: str = "1.0.0") -> dict[str, Any]:
    topics = topics or Topics()
    broker = KafkaBroker("localhost:9092")

    @broker.subscriber(
        topics.wallet_balance_changed,
        title="wallet-balance-changed",
        description=events.WalletBalanceChanged.__doc__,
    )
    async def wallet_balance_changed(event: events.WalletBalanceChanged) -> None:
        """A wallet's new balance. Key: customer_id."""

    @broker.subscriber(
        topics.settings_updated,
        title="settings-updated",
        description=events.SettingsUpdated.__doc__,
    )
    async def settings_updated(event: events.SettingsUpdated) -> None:
        """A customer's payment settings, whole. Key: customer_id."""

    broker.publisher(
        topics.invoice_requested,
        title="invoice-requested",
        schema=events.InvoiceRequested,
        description=events.InvoiceRequested.__doc__,
    )
    broker.publisher(
        topics.credit_issued,
        title="credit-issued",
        schema=events.CreditIssued,
        description=events.CreditIssued.__doc__,
    )
    broker.publisher(
        topics.top_up_failed,
        title="top-up-failed",
        schema=events.TopUpFailed,
        description=events.TopUpFailed.__doc__,
    )
    broker.publisher(
        topics.dead_letter,
        title="auto-topup-dead-letter",
        schema=bytes,
        description=DEAD_LETTER_DESCRIPTION,
    )

    spec = AsyncAPI(
        broker,
        title="auto-topup",
        version=version,
        schema_version="3.0.0",
        description="Tops up prepaid customer wallets the moment they run low. "
        "Every message is keyed by customer_id (UTF-8).",
    )
    rendered: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return rendered
