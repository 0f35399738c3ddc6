"""The order in which one batch is applied: each customer's settings and balances in event time.

The contract (v2, "Order of one customer's events"): one customer's settings and balances are
applied in event-time order (`occurred_at`; at the same instant, settings first). This is what
Kafka Streams' PartitionGroup does for co-partitioned inputs: it takes the record with the
lowest timestamp among the partitions' heads. Each topic keeps the order its partition
delivered, so the staleness rules (`sequence`, `version`, `(occurred_at, event_id)`) see a
topic's records as before: a balance that arrives after a newer one of the same wallet is still
stale. Pure: the wait for the other topic is in alignment.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.contract.codec import Invalid
from service.domain.model import BalanceChanged, InvoiceStatusChanged, SettingsUpdated
from service.service_layer.ports import InputRecord

Decoded = tuple[InputRecord, BalanceChanged | SettingsUpdated | InvoiceStatusChanged | Invalid]


def in_event_time(decoded: Sequence[Decoded], settings_topic: str) -> Sequence[Decoded]:
    """The batch in the order to apply it: each customer's settings are placed among that
    customer's balances by `occurred_at` (a settings record goes before a balance of the same
    instant). The customer's records take the places in the batch that its records had, so
    records of other customers keep theirs: a batch that is in event time across customers
    stays so. Without settings in the batch (the usual case), the batch itself."""
    queues = _settings_queues(decoded, settings_topic)
    if not queues:
        return decoded
    places: dict[str, list[int]] = {}
    others: dict[str, list[Decoded]] = {}  # each customer's records of the other topics
    for i, pair in enumerate(decoded):
        record, event = pair
        if isinstance(event, Invalid) or event.customer_id not in queues:
            continue
        places.setdefault(event.customer_id, []).append(i)
        if record.topic != settings_topic:
            others.setdefault(event.customer_id, []).append(pair)
    out = list(decoded)
    for customer_id, queue in queues.items():
        merged = _merged(queue, others.get(customer_id, []))
        for i, pair in zip(places[customer_id], merged, strict=True):
            out[i] = pair
    return out


def _merged(queue: list[tuple[datetime, Decoded]], others: list[Decoded]) -> list[Decoded]:
    """One customer's settings (`queue`) placed among its other records by time, settings
    first at the same instant; each keeps its own order."""
    out: list[Decoded] = []
    i = 0
    for pair in others:
        at = pair[1].occurred_at  # type: ignore[union-attr]
        while i < len(queue) and queue[i][0] <= at:
            out.append(queue[i][1])
            i += 1
        out.append(pair)
    out += [pair for _, pair in queue[i:]]
    return out


def apply_order(decoded: Sequence[Decoded], settings_topic: str) -> list[int]:
    """The indexes of `decoded` in the order `in_event_time` applies them."""
    where = {id(pair): i for i, pair in enumerate(decoded)}
    return [where[id(pair)] for pair in in_event_time(decoded, settings_topic)]


def _settings_queues(
    decoded: Sequence[Decoded], settings_topic: str
) -> dict[str, list[tuple[datetime, Decoded]]]:
    """Each customer's decoded settings records, in batch order, with their `occurred_at`."""
    queues: dict[str, list[tuple[datetime, Decoded]]] = {}
    for pair in decoded:
        event = pair[1]
        if pair[0].topic == settings_topic and not isinstance(event, Invalid):
            queues.setdefault(event.customer_id, []).append((event.occurred_at, pair))
    return queues
