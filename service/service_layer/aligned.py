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
) -> None:
    """Applies the records in order (`apply` may hold a due record: it appends to `held`),
    except those behind a record that waits: its customer's later records, and a partner's
    later records behind a top-up it pays."""
    for record, event in ordered:
        if isinstance(event, Invalid):
            # Keyed by a customer whose record waits: behind it (the key is the customer).
            key = record.key
            if key and (behind := align.behind(record, key.decode("utf-8", "replace"))):
                held.append(behind)
                continue
        # Future-dated records are dead-lettered at once, whatever waits.
        elif event.occurred_at <= horizon:
            if behind := align.held_back(record, event.customer_id, event.occurred_at):
                held.append(behind)
                continue
            before = len(held)
            apply(record, event)
            if len(held) == before:
                align.settled(record.topic, record.partition, record.offset)
            continue
        apply(record, event)
