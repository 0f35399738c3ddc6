"""Which rail serves which payment method. A new rail is one module and one line here (or,
in a test, one entry in a `Rails` of its own)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from service.domain.model import PaymentMethod, Settings
from service.domain.rails.base import Rail
from service.domain.rails.cheque_tt import ChequeTT
from service.domain.rails.fallback import Fallback
from service.domain.rails.master_account import MasterAccount
from service.domain.rails.stripe import Stripe


class Rails(Mapping[PaymentMethod, Rail]):
    """An immutable registry of rails by the payment method they serve."""

    __slots__ = ("_by_method",)

    def __init__(self, *rails: Rail) -> None:
        self._by_method = {rail.method: rail for rail in rails}

    def __getitem__(self, method: PaymentMethod) -> Rail:
        return self._by_method[method]

    def __iter__(self) -> Iterator[PaymentMethod]:
        return iter(self._by_method)

    def __len__(self) -> int:
        return len(self._by_method)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rails) and self._by_method == other._by_method

    def __hash__(self) -> int:
        return hash(tuple(self._by_method.items()))

    def serving(self, settings: Settings) -> Rail:
        """The rail of these settings: their method's, composed with their fallback's."""
        rail = self._by_method[settings.payment_method]
        fallback = settings.fallback_method
        if fallback is None or fallback is settings.payment_method:
            return rail
        return Fallback(rail, self._by_method[fallback])

    def replacing(self, *rails: Rail) -> Rails:
        """These rails, with `rails` in place of (or beside) those for their methods."""
        return Rails(*self._by_method.values(), *rails)


DEFAULT_RAILS = Rails(ChequeTT(), MasterAccount(), Stripe())
