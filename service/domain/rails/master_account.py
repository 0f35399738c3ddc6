"""Master account: a reseller (partner) pays for its customer from the partner's own wallet.

The credit is issued at once if what the partner's wallet can cover allows: its last known
balance less the credits this service issued from it that its wallet service has not shown as
applied yet (see `service.domain.reservations`).
"""

from __future__ import annotations

from dataclasses import replace

from service.domain.model import Credit, PaymentMethod, SettingsUpdated, Wallet
from service.domain.money import minus, total
from service.domain.rails.base import Due, FundingSource, InstantRail, Output, Settled, Step
from service.domain.reasons import DeadLetterReason, FailureReason
from service.domain.reservations import unreleased


class MasterAccount(InstantRail):
    method = PaymentMethod.MASTER_ACCOUNT

    def settings_error(self, wallet: Wallet, event: SettingsUpdated) -> tuple[str, str] | None:
        if event.partner_id is not None and event.partner_id == event.customer_id:
            return (DeadLetterReason.PARTNER_IS_CUSTOMER, "a wallet cannot fund itself")
        return None

    def settle(self, due: Due) -> Step:
        return fund_from_partner(due)


def _failed(reason: str, detail: str) -> Settled:
    return Settled(Output.TOP_UP_FAILED, reason, detail)


def fund_from_partner(due: Due) -> Settled:
    """Issues the top-up from the partner's wallet if what it can cover allows; the credit is
    reserved under `due.credit_event_id` until released."""
    partner, topup = due.payer, due.topup
    if partner is None or partner.balance is None:
        return _failed(
            FailureReason.PARTNER_BALANCE_UNKNOWN,
            f"no balance known for partner {topup.partner_id}",
        )
    if partner.balance.currency != topup.currency:
        return _failed(
            FailureReason.PARTNER_CURRENCY_MISMATCH,
            f"partner wallet is in {partner.balance.currency}, top-up in {topup.currency}",
        )
    reserved = unreleased(partner.credits_out, None, due.now, due.credit_hold)
    available = minus(partner.balance.amount, total(c.amount for c in reserved))
    if available < topup.amount:
        return _failed(
            FailureReason.PARTNER_INSUFFICIENT_FUNDS,
            f"partner {topup.partner_id} can cover {available} (balance "
            f"{partner.balance.amount} less {len(reserved)} credits not yet applied), "
            f"top-up needs {topup.amount}",
        )
    credit = Credit(due.now, topup.amount, due.credit_event_id)
    funded = replace(partner, credits_out=(*reserved, credit))
    return Settled(
        Output.CREDIT_ISSUED, funding_source=FundingSource.MASTER_ACCOUNT, changed=(funded,)
    )
