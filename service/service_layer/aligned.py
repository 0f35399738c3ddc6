"""A batch applied in its order, except the records that wait (see alignment.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from service.contract.codec import Invalid
from service.domain.model import BalanceChanged, InvoiceStatusChanged, SettingsUpdated
from service.service_layer.alignment import Alignment, Held
from service.service_layer.ports import InputRecord

Event = BalanceChanged | SettingsUpdated | InvoiceStatusChanged


def apply_aligned(
    ordered: Sequence[tuple[InputRecord, Event | Invalid]],
    align: Alignment,
    horizon: datetime,
    apply: Callable[[InputRecord, Event | Invalid], None],
    held: list[Held],
    partner_of: Callable[[str], str | None],
) -> None:
    """Applies the records in order (`apply` may hold a due record: it appends to `held`),
    except those that wait behind a held record (behind.py). `partner_of`: the partner that
    pays a customer's top-ups, if one does."""
    for record, event in ordered:
        if isinstance(event, Invalid):
            # Keyed by a customer with a held record: behind it (the key is the customer).
            if record.key:
                customer = record.key.decode("utf-8", "replace")
                if h := align.held_back(record, customer, None, partner_of):
                    held.append(h)
                    continue
        # Future-dated records are dead-lettered at once, whatever waits.
        elif event.occurred_at <= horizon:
            customer = event.customer_id
            if h := align.held_back(record, customer, event.occurred_at, partner_of):
                held.append(h)
                continue
            before = len(held)
            apply(record, event)
            if len(held) == before:
                align.settled(record.topic, record.partition, record.offset)
            continue
        apply(record, event)
