"""The read-only support page and its JSON API, on the service's HTTP server (docs/support.md).

- `GET /support`: one self-contained HTML page (support_page.py); it holds no data.
- `GET /v1/customers?prefix=P`: customer ids starting with P (at most SEARCH_LIMIT).
- `GET /v1/customers/{id}`: what `auto-topup explain` answers, and the customer's history,
  balance chart, dead letters, open invoices and notices (service_layer/support.py).
- `GET /v1/customers/{id}/history?limit=N`: the append-only history, newest first.

Only with AUTO_TOPUP_SUPPORT_TOKEN set: without it every route answers 404, naming the
variable. The JSON routes want `Authorization: Bearer <token>` (compared in constant time) and
answer 401 otherwise. Nothing here writes: there is no POST route, and the reads run in
read-only transactions.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from service.adapters.postgres.connection import DATABASE_ERRORS, Pool
from service.adapters.postgres.support_reads import PgSupportReads
from service.config import Settings
from service.domain import rules
from service.entrypoints.support_page import PAGE
from service.service_layer.explain_report import to_json
from service.service_layer.ports import Clock
from service.service_layer.support import (
    HISTORY_MAX,
    HISTORY_ROWS,
    SEARCH_LIMIT,
    SupportReads,
    chart_since,
    customer_report,
    history_line,
)

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "AUTO_TOPUP_SUPPORT_TOKEN"  # noqa: S105 (its name, not a token)
MAX_ID_CHARS = 200  # a customer id or prefix longer than this is refused (400)

# The page runs only its own inline script and style, and talks only to this server.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Handler = Callable[[web.Request, SupportReads], Any]


def _json(body: dict[str, Any], status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        text=to_json(body),
        status=status,
        content_type="application/json",
        headers={**JSON_HEADERS, **headers},
    )


def _error(status: int, error: str, message: str, **headers: str) -> web.Response:
    return _json({"error": error, "message": message}, status, **headers)


def _off() -> web.Response:
    return _error(
        404,
        "support_disabled",
        f"the support page and its API are off: set {TOKEN_VARIABLE} (16 characters or "
        "more) to enable them",
    )


@dataclass
class SupportApi:
    """The routes; `reads` gives None until the database is connected (503 until then)."""

    token: str | None  # None: the support routes are off
    reads: Callable[[], SupportReads | None]
    clock: Clock
    policy: rules.Policy

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/support", self.page)
        app.router.add_get("/v1/customers", self.search)
        app.router.add_get("/v1/customers/{customer_id}", self.customer)
        app.router.add_get("/v1/customers/{customer_id}/history", self.history)

    async def page(self, _: web.Request) -> web.Response:
        if self.token is None:
            return _off()
        return web.Response(text=PAGE, content_type="text/html", headers=PAGE_HEADERS)

    def _authorized(self, request: web.Request) -> bool:
        assert self.token is not None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.strip().encode())

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why this request gets no data (off, not authorized, no database yet); None: it does."""
        if self.token is None:
            return _off()
        if not self._authorized(request):
            return _error(
                401,
                "unauthorized",
                "a valid support token is required: Authorization: Bearer <token>",
                **{"WWW-Authenticate": 'Bearer realm="auto-topup support"'},
            )
        if self.reads() is None:
            return _error(503, "not_ready", "the service is not connected to PostgreSQL yet")
        return None

    async def _answer(self, request: web.Request, handler: Handler) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        reads = self.reads()
        assert reads is not None
        try:
            response: web.Response = await handler(request, reads)
        except DATABASE_ERRORS as exc:
            log.warning("support: cannot read PostgreSQL: %s", type(exc).__name__)
            return _error(503, "database_unavailable", "cannot read PostgreSQL now")
        return response

    async def search(self, request: web.Request) -> web.Response:
        return await self._answer(request, self._search)

    async def customer(self, request: web.Request) -> web.Response:
        return await self._answer(request, self._customer)

    async def history(self, request: web.Request) -> web.Response:
        return await self._answer(request, self._history)

    @staticmethod
    async def _search(request: web.Request, reads: SupportReads) -> web.Response:
        prefix = request.query.get("prefix", "")
        if not prefix or len(prefix) > MAX_ID_CHARS:
            return _error(400, "bad_prefix", f"prefix: 1 to {MAX_ID_CHARS} characters")
        found = await reads.search(prefix, SEARCH_LIMIT)
        return _json({"prefix": prefix, "limit": SEARCH_LIMIT, "customers": found})

    async def _customer(self, request: web.Request, reads: SupportReads) -> web.Response:
        customer_id = request.match_info["customer_id"]
        if len(customer_id) > MAX_ID_CHARS:
            return _error(400, "bad_customer_id", f"at most {MAX_ID_CHARS} characters")
        now = self.clock()
        view = await reads.customer(customer_id, now, self.policy, chart_since(now))
        report = customer_report(customer_id, view, now, self.policy)
        if report is None:
            return _error(404, "unknown_customer", "no wallet, daily key or decision is recorded")
        return _json(report)

    @staticmethod
    async def _history(request: web.Request, reads: SupportReads) -> web.Response:
        customer_id = request.match_info["customer_id"]
        raw = request.query.get("limit", str(HISTORY_ROWS))
        if not raw.isdigit() or not 1 <= int(raw) <= HISTORY_MAX or len(customer_id) > MAX_ID_CHARS:
            return _error(400, "bad_limit", f"limit: a whole number from 1 to {HISTORY_MAX}")
        rows = await reads.history(customer_id, int(raw))
        return _json({"customer_id": customer_id, "history": [history_line(r) for r in rows]})


def support_routes(
    settings: Settings, pool: Callable[[], Pool | None], clock: Clock
) -> Callable[[web.Application], None]:
    """The support routes of the service's HTTP server, reading through its pool (`pool()`
    is None until start-up has connected it)."""
    token = settings.support_token

    def reads() -> SupportReads | None:
        connected = pool()
        if connected is None:
            return None
        return PgSupportReads(connected, settings.topics.auto_topup_notice)

    secret = token.get_secret_value() if token is not None else None
    return SupportApi(secret, reads, clock, settings.policy).add_routes
