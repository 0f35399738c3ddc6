"""Stripe through its official SDK (async client): off-session PaymentIntents on a saved card."""

from __future__ import annotations

from typing import Any

import stripe

from service.service_layer.payments import (
    TEMPORARY_DECLINES,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    TransientChargeError,
)

# One page of search results; a daily key has one PaymentIntent (more would be a bug of ours,
# which the charger reports).
SEARCH_LIMIT = 10


def _failure_reason(error: Any) -> str:
    """Stripe's most specific code: decline_code, else code, else a generic one."""
    if error is None:
        return "card_declined"
    decline = getattr(error, "decline_code", None)
    code = getattr(error, "code", None)
    return str(decline or code or "card_declined")


def _card_failed(reason: str) -> bool:
    """A card error pauses Stripe top-ups unless Stripe documents the decline as temporary."""
    return reason not in TEMPORARY_DECLINES


def search_query(daily_key: str) -> str:
    """The Search API query for one daily key (quotes and backslashes escaped)."""
    value = daily_key.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['daily_key']:'{value}'"


def create_params(request: ChargeRequest) -> dict[str, Any]:
    """The parameters of the off-session PaymentIntent that charges the saved card."""
    return {
        "amount": request.amount_minor,
        "currency": request.currency.lower(),
        "customer": request.customer,
        "payment_method": request.payment_method,
        "off_session": True,
        "confirm": True,
        "metadata": request.metadata,
    }


def _daily_key_of(intent: Any) -> str | None:
    metadata = getattr(intent, "metadata", None)
    try:
        return None if metadata is None else str(metadata["daily_key"])
    except KeyError:
        return None


def _result(intent: Any) -> ChargeResult:
    status = intent.status
    if status in ("succeeded", "requires_capture"):
        return ChargeResult(ChargeStatus.SUCCEEDED, intent.id)
    if status == "processing":
        return ChargeResult(ChargeStatus.PENDING, intent.id)
    if status == "requires_action":
        # Off-session there is nobody to authenticate: Stripe calls this authentication_required.
        return ChargeResult(
            ChargeStatus.FAILED,
            intent.id,
            "authentication_required",
            "the card asks for authentication, impossible off-session",
            card_unusable=True,
        )
    error = getattr(intent, "last_payment_error", None)
    reason = _failure_reason(error)
    return ChargeResult(
        ChargeStatus.FAILED,
        intent.id,
        reason,
        str(getattr(error, "message", "") or f"payment intent {status}"),
        card_unusable=_card_failed(reason),
    )


class StripeGateway:
    def __init__(
        self, api_key: str, api_base: str | None = None, *, timeout_seconds: float = 30.0
    ) -> None:
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            http_client=stripe.HTTPXClient(timeout=timeout_seconds),
            max_network_retries=0,  # the charger retries, recording each attempt
        )

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                create_params(request),  # type: ignore[arg-type]
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as exc:
            error = exc.error
            intent_id = getattr(getattr(error, "payment_intent", None), "id", None)
            reason = _failure_reason(error)
            return ChargeResult(
                ChargeStatus.FAILED,
                intent_id,
                reason,
                exc.user_message or str(exc),
                card_unusable=_card_failed(reason),
            )
        except stripe.StripeError as exc:
            return self._classify(exc)
        return _result(intent)

    async def retrieve(self, payment_intent_id: str) -> ChargeResult:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError as exc:
            return self._classify(exc)
        return _result(intent)

    async def find(self, daily_key: str) -> list[ChargeResult]:
        """The PaymentIntents Stripe's Search API returns for metadata.daily_key. Search lags
        writes (under a minute normally, up to an hour in an outage): an empty list is no proof
        that no PaymentIntent exists; the charger decides what it may conclude. Any error, a
        Search API that is not there (localstripe, accounts in India) included, raises
        TransientChargeError: no answer, which proves nothing either."""
        try:
            page = await self._client.v1.payment_intents.search_async(
                {"query": search_query(daily_key), "limit": SEARCH_LIMIT}
            )
        except stripe.StripeError as exc:
            raise TransientChargeError(
                f"search failed: {type(exc).__name__} ({exc.http_status}): {exc}"
            ) from exc
        return [
            _result(intent)
            for intent in page.data
            if _daily_key_of(intent) == daily_key  # exact, whatever the search matched
        ]

    @staticmethod
    def _classify(exc: stripe.StripeError) -> ChargeResult:
        status = exc.http_status
        if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
            raise TransientChargeError(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            # Our key is wrong or revoked: an operator must act; the customer is not at fault.
            raise TransientChargeError(f"Stripe refused our credentials: {exc}") from exc
        if status is None or status >= 500 or status in (409, 429):
            raise TransientChargeError(f"{type(exc).__name__} ({status}): {exc}") from exc
        if isinstance(exc, stripe.IdempotencyError):
            # The key was used with other parameters: the first request may have charged.
            # Never settle this as a failure; keep it open for an operator, loudly.
            raise TransientChargeError(f"idempotency conflict, needs an operator: {exc}") from exc
        code = str(exc.code or "stripe_request_invalid")
        return ChargeResult(
            ChargeStatus.FAILED,
            None,
            code,
            exc.user_message or str(exc),
            # The saved customer or card is gone: as unusable as a declined card.
            card_unusable=code == "resource_missing",
        )
