"""What a partner can fund under the contract: its last balance less its credits still
reserved. A credit is reserved under its credit-issued event's id until a balance event of
the partner's wallet names it in `caused_by`."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(slots=True)
class Reserved:
    """One partner's credits still reserved (credit-issued event id -> amount), and the total
    of those released so far."""

    credits: dict[str, Decimal] = field(default_factory=dict)
    released: Decimal = Decimal(0)

    def reserve(self, credit_id: str, amount: Decimal) -> None:
        self.credits[credit_id] = amount

    def release(self, credit_id: str | None) -> bool:
        """A balance event names `credit_id` in `caused_by`: no longer reserved. False if it
        names none, or one that is not reserved."""
        if credit_id is None or credit_id not in self.credits:
            return False
        self.released += self.credits.pop(credit_id)
        return True

    def available(self, balance: Decimal | None) -> Decimal | None:
        """What the partner can cover with `balance` (its last), None while it is unknown."""
        if balance is None:
            return None
        return balance - sum(self.credits.values(), Decimal(0))
