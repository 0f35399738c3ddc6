"""No secret reaches a log line, whichever logger writes it."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from service.entrypoints import logs


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("using sk_test_e2e_fake_key now", "sk_test_e2e_fake_key"),
        ("rk_live_AbC123xyz", "rk_live_AbC123xyz"),
        ('{"id": "pi_3Mt", "client_secret": "pi_3Mt_secret_Zz9"}', "pi_3Mt_secret_Zz9"),
        ("GET /v1/x?client_secret=opaque-value&expand=1", "opaque-value"),
        ("client_secret: 'opaque'", "opaque"),
        ('{\\"client_secret\\": \\"seti_1_secret_2\\"}', "seti_1_secret_2"),
    ],
)
def test_a_secret_is_redacted(text: str, secret: str) -> None:
    out = logs.redact(text)
    assert secret not in out
    assert "[redacted]" in out


def test_other_ids_are_kept() -> None:
    text = "charged pi_3Mt for cus_9 with pm_card_visa (idempotency key cust-1/2026-03-10)"
    assert logs.redact(text) == text


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """logs.configure changes the process's logging: put it back for the other tests."""
    root = logging.getLogger()
    names = ("stripe", "httpx", "httpcore", "urllib3", "requests", "aiokafka", "faststream")
    handlers, level = root.handlers[:], root.level
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for n, lvl in levels.items():
        logging.getLogger(n).setLevel(lvl)


@pytest.mark.usefixtures("restored_logging")
def test_the_formatter_redacts_and_body_loggers_stay_at_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("DEBUG")
    logging.getLogger("stripe").debug("response body client_secret=pi_1_secret_2")
    logging.getLogger("stripe").info("Request to Stripe api_key=sk_live_leaked")
    logging.getLogger("auto_topup.test").debug("charge pi_1 ok")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["msg"] for e in lines] == ["Request to Stripe api_key=[redacted]", "charge pi_1 ok"]
    assert logging.getLogger("stripe").getEffectiveLevel() == logging.INFO
