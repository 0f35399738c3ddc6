"""What a rail decided, as the output record this service publishes and the daily key's row.

The rails are pure and know nothing of the wire; this is where a `Settled` becomes its event
under the daily key's deterministic id (the same whoever settles it: the batch handler, the
charger, or an operator resolving a charge).
"""

from __future__ import annotations

from datetime import datetime

from service.config import Topics
from service.contract import messages
from service.contract.events import OutputEvent
from service.domain.model import TopUp
from service.domain.rails import FundingSource, Output, Settled
from service.service_layer.outbox import output_record
from service.service_layer.ports import OutboxRecord


def output_event(topup: TopUp, settled: Settled, now: datetime) -> OutputEvent:
    if settled.output is Output.INVOICE_REQUESTED:
        return messages.invoice_requested(topup, now)
    if settled.output is Output.TOP_UP_FAILED:
        assert settled.reason is not None
        return messages.top_up_failed(topup, settled.reason, settled.detail, now)
    if settled.funding_source is FundingSource.STRIPE:
        assert settled.payment_intent_id is not None
        return messages.credit_from_stripe(topup, settled.payment_intent_id, now)
    return messages.credit_from_partner(topup, now)


def topic_of(topics: Topics, output: Output) -> str:
    return {
        Output.INVOICE_REQUESTED: topics.invoice_requested,
        Output.CREDIT_ISSUED: topics.credit_issued,
        Output.TOP_UP_FAILED: topics.top_up_failed,
    }[output]


def settled_record(
    topics: Topics,
    topup: TopUp,
    settled: Settled,
    now: datetime,
    trace: tuple[tuple[str, str], ...] = (),
) -> OutboxRecord:
    """The outbox row of a settled top-up's output event."""
    return output_record(topic_of(topics, settled.output), output_event(topup, settled, now), trace)
