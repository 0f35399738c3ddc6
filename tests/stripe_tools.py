"""Cards saved in localstripe, as an online top-up would leave them."""

from __future__ import annotations

from typing import Any

import stripe

GOOD = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"
NEEDS_AUTHENTICATION = "4000002500003155"
# One call to a local Stripe (localstripe, or tests/stripe_http_fake.py's scripted one), named
# rather than the SDK's default (80 s): generous, it is local.
REQUEST_SECONDS = 60.0


def client(api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_e2e_fake_key",
        base_addresses={"api": api_base},
        http_client=stripe.HTTPXClient(timeout=REQUEST_SECONDS, allow_sync_methods=True),
    )


def saved_card(api_base: str, number: str = GOOD) -> tuple[str, str]:
    """(stripe_customer_id, stripe_payment_method_id) of a card attached to a new customer."""
    c = client(api_base)
    customer = c.v1.customers.create({"email": "payer@example.com"})
    params: Any = {
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    }
    method = c.v1.payment_methods.create(params)
    c.v1.payment_methods.attach(method.id, {"customer": customer.id})
    return customer.id, method.id


def payment_intent(api_base: str, intent_id: str) -> Any:
    return client(api_base).v1.payment_intents.retrieve(intent_id)
