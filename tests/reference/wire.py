"""The names of the contract the model reads, as the scenarios write them: the input topics
and the rule of the credit-issued event's id."""

from __future__ import annotations

import uuid
from datetime import date

SETTINGS = "SETTINGS_UPDATED"
BALANCE = "WALLET_BALANCE_CHANGED"
# The namespace of output event ids (the contract, docs/contract.md "Output `event_id`"): anyone can
# recompute a credit-issued event's id from its daily key.
OUTPUT_NAMESPACE = uuid.UUID("6f1d3c1e-5a0e-4c52-9a53-8a4f0f5b2d17")


def credit_issued_id(customer_id: str, business_date: date) -> str:
    """The `event_id` of the credit-issued event of a daily key, by the contract's rule."""
    name = f"{customer_id}/{business_date.isoformat()}|credit-issued"
    return str(uuid.uuid5(OUTPUT_NAMESPACE, name))
