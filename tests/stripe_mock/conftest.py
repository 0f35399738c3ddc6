"""Where the stripe-mock tier finds stripe-mock: STRIPE_MOCK_API_BASE, which the local stack
exports (`deploy/local/stack.sh env`). Without it the tier fails, never skips."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def stripe_mock_base() -> str:
    base = os.environ.get("STRIPE_MOCK_API_BASE")
    if not base:
        pytest.fail(
            "no stripe-mock: run `make test-stripe-mock` (starts it), or set "
            "STRIPE_MOCK_API_BASE (`deploy/local/stack.sh env` prints it)",
            pytrace=False,
        )
    return base
