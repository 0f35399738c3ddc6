"""The support page in a real headless Chromium, against the running service: a customer's
settings and balances go through Kafka (one top-up triggered, the next suppressed), then the
page is driven over WebDriver (tests/webdriver.py) as support staff would use it.

The screenshot goes to docs/support-page.png with AUTO_TOPUP_UPDATE_SCREENSHOT=1, else to
pytest's tmp_path. Without a browser the test fails, naming `make browser`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import Flow, customer_id, pinned_offset
from tests.service_process import ServiceProcess
from tests.webdriver import Browser, chromium, missing_browser

TOKEN = "e2e-support-token-0123456789abcdef"
# Until the page shows what the API answers (the API reads PostgreSQL: quick; a busy machine
# and a browser starting are not).
PAGE_SECONDS = 60.0
HTTP_SECONDS = 60.0
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "support-page.png"


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC (AUTO_TOPUP_TEST_CLOCK): both balances fall on one
    business day whatever the host's hour."""
    return pinned_offset()


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "AUTO_TOPUP_SUPPORT_TOKEN": TOKEN}


async def _get(port: int, path: str, token: str | None) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_SECONDS)) as http,
        http.get(f"http://127.0.0.1:{port}{path}", headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.text()


async def _decisions(page: Browser) -> list[list[str]]:
    rows: list[list[str]] = await page.script(
        "return [...document.querySelectorAll('#decisions tr.decision')]"
        ".map((tr) => [...tr.cells].map((td) => td.textContent));"
    )
    return rows


async def _search(page: Browser, token: str, customer: str) -> None:
    await page.type("#token", token)
    await page.click("#token-save")
    await page.type("#search", customer)
    await page.click("#search-go")


async def test_support_page_shows_why(service: ServiceProcess, flow: Flow, tmp_path: Path) -> None:
    problem = missing_browser()
    assert problem is None, problem  # fails, never skips: `make browser` installs it
    customer = customer_id("support")
    await flow.settings(customer, threshold="10.00", trigger="100.00")
    await flow.balance(customer, "5.00", sequence=1)
    await flow.wait_out("INVOICE_REQUESTED", customer)
    await flow.balance(customer, "4.00", sequence=2)  # the same business day: suppressed
    await flow.flush(customer)
    port = service.http_port

    for token in (None, "wrong-token-wrong-token-wrong"):
        status, headers, body = await _get(port, f"/v1/customers/{customer}", token)
        assert status == 401, body
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert customer not in body
    status, _, body = await _get(port, f"/v1/customers/{customer}", TOKEN)
    assert status == 200, body

    async with chromium() as page:
        await page.get(f"http://127.0.0.1:{port}/support")
        await _search(page, "wrong-token-wrong-token-wrong", customer)
        message = await page.wait_for(
            lambda: page.script("return document.querySelector('#message.error')?.textContent"),
            "the page's 401 message",
            PAGE_SECONDS,
        )
        assert "401" in message
        assert "token" in message

        await _search(page, TOKEN, customer)
        rows = await page.wait_for(
            lambda: _has_both(page), "the chart and the two decisions", PAGE_SECONDS
        )
        outcomes = [(cells[1], cells[2]) for cells in rows]
        assert outcomes[:2] == [("suppressed", "daily_key_taken"), ("triggered", "—")]
        chart = await page.script(
            "const s = document.querySelector('#balance-chart');"
            "return {points: s.querySelectorAll('circle.point').length,"
            " threshold: s.querySelectorAll('line.threshold').length,"
            " line: s.querySelector('polyline.balance').getAttribute('points')};"
        )
        assert chart["points"] >= 2
        assert chart["threshold"] == 1
        assert len(chart["line"].split()) == chart["points"]
        settings = await page.text("#settings")
        assert "cheque_tt" in settings
        assert "finance_app" in settings
        today = await page.text("#today")
        assert "daily_key_taken" in today
        assert "attempt day ends" in today
        # The Cheque / TT request of the first event is open until invoicing says it is paid.
        invoices = await page.text("#open-invoices")
        assert "100.00 USD" in invoices
        assert "requested" in invoices
        assert "none" in await page.text("#notices")
        update = os.environ.get("AUTO_TOPUP_UPDATE_SCREENSHOT") == "1"
        shot = SCREENSHOT if update else tmp_path / "support-page.png"
        await page.screenshot(shot)
        assert (await asyncio.to_thread(shot.read_bytes)).startswith(b"\x89PNG")


async def _has_both(page: Browser) -> list[list[str]] | None:
    ready = await page.script(
        "return !!document.querySelector('#balance-chart polyline.balance')"
        " && document.querySelectorAll('#decisions tr.decision').length >= 2;"
    )
    return await _decisions(page) if ready else None
