"""A fallback (contract v2): when the payment method fails within an attempt, the same attempt
goes on with `fallback_method`, for the same amount, under the same daily key. A composition of
two rails, not a special case of either.

The first method fails when its rail settles the top-up as failed (a partner without funds or
unknown), when its top-ups are paused by a failure of the method itself (a card paused after a
hard failure), or, for a rail charged in phases, when the charge fails (the charger then asks
`after_charge`). A suppression is not a failure: while `max_open_invoices` are open, no invoice
is requested, by either step.

The fallback step's output carries `fallback_from` and its own event id
(`<daily key>|<event type>|<method>`). When both fail, the attempt publishes one
`top-up-failed`: the fallback step's, whose detail names the first failure too.
"""

from __future__ import annotations

from dataclasses import replace

from service.domain.model import PaymentMethod, SettingsUpdated, TopUp, Wallet
from service.domain.rails.base import ChargeResult, Due, Output, Rail, Settled, Step, Terms
from service.domain.reasons import BlockReason

# Pauses that are a failure of the method itself (the fallback goes on); any other pause
# (an open invoice) suppresses the attempt.
FAILING_PAUSES = frozenset({BlockReason.STRIPE_PAUSED})


class Fallback:
    def __init__(self, first: Rail, then: Rail) -> None:
        self.method: PaymentMethod = first.method
        self.first, self.then = first, then

    def settings_error(self, wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
        return self.first.settings_error(wallet, event) or self.then.settings_error(wallet, event)

    def terms(self, wallet: Wallet) -> Terms | str:
        return self.first.terms(wallet)

    def paused(self, wallet: Wallet) -> str | None:
        reason = self.first.paused(wallet)
        if reason is None or reason not in FAILING_PAUSES:
            return reason
        return reason if self.then.paused(wallet) is not None else None

    def settle(self, due: Due) -> Step:
        wallet = due.wallet
        if wallet is not None and self.first.paused(wallet) is not None:
            failed = Settled(Output.TOP_UP_FAILED, BlockReason.STRIPE_PAUSED, "paused")
            return self._go_on(due, failed)
        step = self.first.settle(due)
        if isinstance(step, Settled) and step.output is Output.TOP_UP_FAILED:
            return self._go_on(due, step)
        return step

    def charged(self, topup: TopUp, result: ChargeResult) -> Settled:
        return self.first.charged(topup, result)

    def after_charge(self, due: Due, settled: Settled) -> Settled:
        """What a settled charge of the first method comes to: a failure goes on with the
        fallback (the charger calls this with the partner's wallet as it stands)."""
        if settled.output is not Output.TOP_UP_FAILED:
            return settled
        return self._go_on(due, settled)

    def _go_on(self, due: Due, failed: Settled) -> Settled:
        wallet = due.wallet
        if wallet is not None and self.then.paused(wallet) is not None:
            return failed  # no invoice while max_open_invoices are open: the first's failure
        topup = replace(due.topup, payment_method=self.then.method, fallback_from=self.method)
        step = self.then.settle(
            replace(due, topup=topup, credit_event_id=due.fallback_credit_event_id)
        )
        if not isinstance(step, Settled):  # a fallback is never a rail charged in phases
            raise TypeError(f"cannot fall back to {self.then.method}: it charges in phases")
        detail = step.detail
        if step.output is Output.TOP_UP_FAILED:
            detail = f"{self.method} failed ({failed.reason}: {failed.detail}); {step.detail}"
        return replace(
            step, detail=detail, topup=topup, pause_card=failed.pause_card or step.pause_card
        )
