"""Every kind of request the service sends to Stripe, through its own gateway and the real SDK,
checked by stripe-mock against Stripe's OpenAPI spec.

stripe-mock answers fixtures: what comes back says nothing about the flow (the charger's
tests cover that). What these tests assert is that Stripe's validation accepts each request,
and, so that the tier can fail, that it refuses the same request with one parameter
misspelled.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from service.adapters.stripe_gateway import StripeGateway, create_params, search_query
from service.service_layer.payments import TransientChargeError
from tests.integration.test_stripe_http import REQUEST  # the charger's request, as it sends it

KEY = "sk_test_stripemockfake"  # stripe-mock wants any key shaped like a test key: sk_test_ + alnum
# One call to the local stripe-mock: generous, it answers in milliseconds.
REQUEST_SECONDS = 30.0


def gateway(base: str) -> StripeGateway:
    return StripeGateway(KEY, base, timeout_seconds=REQUEST_SECONDS)


def sdk(base: str) -> stripe.StripeClient:
    """The same SDK, configured as the gateway is, to send what the gateway never would."""
    return stripe.StripeClient(
        KEY,
        base_addresses={"api": base},
        http_client=stripe.HTTPXClient(timeout=REQUEST_SECONDS),
        max_network_retries=0,
    )


async def test_create_is_accepted(stripe_mock_base: str) -> None:
    result = await gateway(stripe_mock_base).charge(REQUEST)
    # A refused request comes back without a PaymentIntent (see StripeGateway._classify).
    assert result.payment_intent_id is not None, result
    assert result.payment_intent_id.startswith("pi_")


async def test_retrieve_is_accepted(stripe_mock_base: str) -> None:
    result = await gateway(stripe_mock_base).retrieve("pi_stripe_mock")
    assert result.payment_intent_id is not None, result


async def test_search_by_metadata_is_accepted(stripe_mock_base: str) -> None:
    # A refused search raises TransientChargeError; the fixture's PaymentIntent carries no
    # daily key, so nothing matches.
    assert await gateway(stripe_mock_base).find(REQUEST.metadata["daily_key"]) == []


async def test_a_misspelled_create_parameter_is_refused(stripe_mock_base: str) -> None:
    params: dict[str, Any] = create_params(REQUEST)
    params["off_sesion"] = params.pop("off_session")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sdk(stripe_mock_base).v1.payment_intents.create_async(
            params,  # type: ignore[arg-type]
            {"idempotency_key": REQUEST.idempotency_key},
        )
    assert refused.value.http_status == 400
    assert "additional properties are not allowed" in str(refused.value)


async def test_a_misspelled_search_parameter_is_refused(stripe_mock_base: str) -> None:
    params: Any = {"query": search_query(REQUEST.metadata["daily_key"]), "limt": 10}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sdk(stripe_mock_base).v1.payment_intents.search_async(params)
    assert refused.value.http_status == 400


async def test_the_gateway_reports_a_refused_search(stripe_mock_base: str) -> None:
    # The gateway's own path for a search Stripe refuses (here: a key not shaped like one).
    refusing = StripeGateway("sk_test_not_a_key", stripe_mock_base, timeout_seconds=REQUEST_SECONDS)
    with pytest.raises(TransientChargeError, match="search failed"):
        await refusing.find(REQUEST.metadata["daily_key"])
