"""The fast path for plain balance events decides exactly as the pydantic model does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.contract.codec import _plain_balance
from service.contract.events import WalletBalanceChanged
from service.domain.model import BalanceChanged

# Valid values, and values near the edges of every check; each field is an edge case one
# time in four, so that both paths are exercised often.
FIELDS: dict[str, tuple[list[Any], list[Any]]] = {
    "event_id": (["e", "e" * 256, " ", "é-1"], ["", "e" * 257, 7, None]),
    "customer_id": (["c-1", "a" * 128, "x:y.z_1"], ["", "a" * 129, "bad id", "c/1", "ü", 1]),
    "currency": (["USD", "JPY"], ["usd", "US", "USDT", 840, None]),
    "balance": (
        ["0", "-0", "5.00", "-12.5", "1" * 18, "0." + "1" * 18, "00.10"],
        ["1" * 19, "0." + "1" * 19, "1e3", "NaN", "+1", "1.", ".5", " 1", "1_0", "١٢", 3, True],
    ),
    "occurred_at": (
        [
            "2026-11-25T10:00:00Z",
            "2026-11-25T10:00:00+05:30",
            "2026-11-25T10:00:00.123456-08:00",
            "2026-11-25T10:00:00-00:00",
            "2026-11-25T23:59:59.9+14:00",
        ],
        [
            "2026-11-25T10:00:00.1234567Z",
            "2026-11-25t10:00:00Z",
            "2026-11-25 10:00:00Z",
            "2026-11-25T10:00:00",
            "2026-02-30T10:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:00:60Z",
            "2026-11-25T10:00:00+24:00",
            "0000-01-01T00:00:00Z",
            "1700000000",
            "2026-11-25T10:00Z",
        ],
    ),
    "sequence": ([None, 0, 1, 2**40], [-1, True, "1", 1.0, 2**70]),
}


@st.composite
def bodies(draw: st.DrawFn) -> tuple[dict[str, Any], bytes | None]:
    body: dict[str, Any] = {}
    for name, (valid, edges) in FIELDS.items():
        choices = edges if draw(st.integers(0, 7)) == 0 else valid
        value = draw(st.sampled_from(choices))
        if draw(st.integers(0, 20)) or (name == "sequence" and value is None):
            body[name] = value  # else the field is missing
    customer = body.get("customer_id")
    own = customer.encode() if isinstance(customer, str) else None
    key = draw(st.sampled_from([own, own, own, own, own, None, b"someone-else"]))
    return body, key


def _through_model(body: dict[str, Any], key: bytes | None) -> BalanceChanged | None:
    try:
        wire = WalletBalanceChanged.model_validate(body)
    except ValidationError:
        return None
    if key != wire.customer_id.encode():
        return None
    return BalanceChanged(
        wire.event_id,
        wire.occurred_at,
        wire.customer_id,
        wire.currency,
        wire.balance,
        wire.sequence,
    )


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_fast_path_accepts_only_what_the_model_accepts_and_decodes_it_the_same(
    case: tuple[dict[str, Any], bytes | None],
) -> None:
    body, key = case
    fast = _plain_balance(body, key)
    if fast is None:
        return  # the model decides (and explains) everything the fast path leaves
    model = _through_model(body, key)
    assert model == fast
    assert model.occurred_at.utcoffset() == fast.occurred_at.utcoffset()
    assert str(model.balance) == str(fast.balance)  # same digits, same exponent


def test_the_plain_shape_takes_the_fast_path() -> None:
    body = {
        "event_id": "e-1",
        "occurred_at": "2026-11-25T10:00:00.5+05:30",
        "customer_id": "c-1",
        "currency": "USD",
        "balance": "-3.10",
        "sequence": 7,
        "extra": {"ignored": True},
    }
    fast = _plain_balance(body, b"c-1")
    assert fast is not None
    assert fast == _through_model(body, b"c-1")
    assert _plain_balance({**body, "balance": 3}, b"c-1") is None  # numbers: the model
