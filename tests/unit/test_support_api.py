"""The support page's JSON API on the in-memory database: its authentication, the routes it
refuses without a token, and the shapes of its answers (aiohttp's own test client)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.adapters.memory import MemoryDatabase
from service.adapters.memory_support import MemorySupportReads
from service.config import Settings, Topics, describe_error
from service.domain import rules
from service.entrypoints.cli_config import shown
from service.entrypoints.http import Probes, make_app
from service.entrypoints.support_http import SupportApi
from service.service_layer.handlers import BatchHandler
from service.service_layer.ports import InputRecord
from tests.factories import NOW, balance_wire, dumps, settings_wire

TOKEN = "a-support-token-of-32-characters"
TOPICS = Topics()
POLICY = rules.Policy()


async def _no_metrics() -> bytes:
    return b""


def _app(db: MemoryDatabase, token: str | None) -> web.Application:
    api = SupportApi(token, lambda: MemorySupportReads(db), lambda: NOW, POLICY)
    return make_app(Probes({}, _no_metrics, routes=api.add_routes))


@pytest.fixture
async def db() -> MemoryDatabase:
    """Customer c-1: cheque settings (threshold 10.00), a balance of 5.00 that triggers, then
    a balance of 4.00 that is suppressed (the day's key is taken)."""
    database = MemoryDatabase()
    handler = BatchHandler(database.unit_of_work, lambda: NOW, POLICY, TOPICS)
    bodies = [
        (TOPICS.settings_updated, settings_wire("c-1", at=NOW - timedelta(hours=3))),
        (TOPICS.wallet_balance_changed, balance_wire("c-1", "5.00", at=NOW - timedelta(hours=2))),
        (TOPICS.wallet_balance_changed, balance_wire("c-1", "4.00", at=NOW - timedelta(hours=1))),
    ]
    for offset, (topic, body) in enumerate(bodies):
        await handler.handle([InputRecord(topic, 0, offset, b"c-1", dumps(body))])
    return database


@pytest.fixture
async def client(db: MemoryDatabase) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(_app(db, TOKEN))) as c:
        yield c


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "path", ["/v1/customers/c-1", "/v1/customers/c-1/history", "/v1/customers?prefix=c"]
)
@pytest.mark.parametrize(
    "headers", [{}, _auth("not-the-right-token-at-all"), {"Authorization": TOKEN}]
)
async def test_json_routes_want_the_token(
    client: TestClient[Any, Any], path: str, headers: dict[str, str]
) -> None:
    r = await client.get(path, headers=headers)
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await r.json())["error"] == "unauthorized"


@pytest.mark.parametrize(
    "path", ["/support", "/v1/customers/c-1", "/v1/customers/c-1/history", "/v1/customers?prefix=c"]
)
async def test_without_a_token_setting_every_support_route_is_404(
    db: MemoryDatabase, path: str
) -> None:
    async with TestClient(TestServer(_app(db, None))) as c:
        r = await c.get(path, headers=_auth())
        assert r.status == 404
        body = await r.json()
        assert body["error"] == "support_disabled"
        assert "AUTO_TOPUP_SUPPORT_TOKEN" in body["message"]


async def test_there_is_no_route_that_writes(client: TestClient[Any, Any]) -> None:
    for path in ("/v1/customers/c-1", "/v1/customers", "/support"):
        assert (await client.post(path, headers=_auth(), data=b"{}")).status == 405


async def test_the_page_is_self_contained_and_holds_no_data(client: TestClient[Any, Any]) -> None:
    r = await client.get("/support")  # no token needed for the page itself
    assert r.status == 200
    html = await r.text()
    assert "c-1" not in html  # all data comes from the API
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "<link" not in html
    assert "src=" not in html
    assert "innerHTML" not in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


async def test_search_by_prefix(client: TestClient[Any, Any]) -> None:
    r = await client.get("/v1/customers", params={"prefix": "c-"}, headers=_auth())
    assert r.status == 200
    assert await r.json() == {"prefix": "c-", "limit": 20, "customers": ["c-1"]}
    r = await client.get("/v1/customers", params={"prefix": "zz"}, headers=_auth())
    assert (await r.json())["customers"] == []
    assert (await client.get("/v1/customers", headers=_auth())).status == 400


async def test_a_customer_answers_what_explain_answers_and_more(
    client: TestClient[Any, Any],
) -> None:
    r = await client.get("/v1/customers/c-1", headers=_auth())
    assert r.status == 200
    c = await r.json()
    s = c["settings"]
    assert (s["payment_method"], s["limit_threshold"], s["origin"]) == (
        "cheque_tt",
        "10.00",
        "finance_app",
    )
    assert c["balance"]["amount"] == "4.00"  # money as strings, never floats
    today = NOW.date().isoformat()
    assert c["daily"]["taken_dates"] == [today]
    assert c["daily"]["today"] == today
    assert c["daily"]["today_taken"] is True
    assert c["daily"]["attempt_day_end"] == (NOW.replace(hour=0) + timedelta(days=1)).isoformat()
    assert c["next_top_up"]["code"] == "daily_key_taken"
    outcomes = [(h["kind"], h["outcome"], h["reason"]) for h in c["history"]]
    assert outcomes == [
        ("decision", "suppressed", "daily_key_taken"),
        ("decision", "triggered", None),
        ("settings", "settings_applied", None),
    ]
    # the settings line is not a decision: the summary (explain's) has only the two decisions
    assert sorted(d["outcome"] for d in c["decisions"]) == ["suppressed", "triggered"]
    chart = c["balance_chart"]
    assert chart["threshold"] == "10.00"
    # the top-up's balance (at the decision's time) and the last balance (at its own time)
    points = [(p["at"], p["balance"]) for p in chart["points"]]
    assert points == sorted(points)
    assert points == [
        ((NOW - timedelta(hours=1)).isoformat(), "4.00"),
        (NOW.isoformat(), "5.00"),
    ]
    # the advisor's usage per business day: its low is a point of the chart too
    assert [d["business_date"] for d in chart["daily"]] == [today]
    assert chart["daily"][0]["low"] == "4.00"
    assert c["open_invoices"] == []
    assert c["notices"] == []
    assert c["dead_letters"] == {"recent": [], "rejected_settings": []}


async def test_history_newest_first_with_a_limit(client: TestClient[Any, Any]) -> None:
    r = await client.get("/v1/customers/c-1/history", params={"limit": "2"}, headers=_auth())
    body = await r.json()
    assert [h["outcome"] for h in body["history"]] == ["suppressed", "triggered"]
    assert body["history"][0]["source"] == f"{TOPICS.wallet_balance_changed}[0]@2"
    for bad in ("0", "501", "x"):
        r = await client.get("/v1/customers/c-1/history", params={"limit": bad}, headers=_auth())
        assert r.status == 400


async def test_an_unknown_customer_is_404(client: TestClient[Any, Any]) -> None:
    r = await client.get("/v1/customers/nobody", headers=_auth())
    assert r.status == 404
    assert (await r.json())["error"] == "unknown_customer"


def test_the_token_setting_refuses_short_or_empty_tokens_and_is_masked() -> None:
    for bad in ("", " " * 20, "short"):
        with pytest.raises(ValueError, match="AUTO_TOPUP_SUPPORT_TOKEN") as caught:
            Settings(AUTO_TOPUP_SUPPORT_TOKEN=bad)
        [line] = describe_error(caught.value).splitlines()
        assert line.startswith("configuration error: AUTO_TOPUP_SUPPORT_TOKEN: ")
        assert "'short'" not in line  # the value is never echoed
    settings = Settings(AUTO_TOPUP_SUPPORT_TOKEN=TOKEN)
    assert settings.support_token is not None
    [row] = [r for r in shown(settings) if r.name == "AUTO_TOPUP_SUPPORT_TOKEN"]
    assert TOKEN not in json.dumps(row.value)
    assert settings.retention_history_days == 90
