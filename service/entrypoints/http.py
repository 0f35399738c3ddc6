"""The HTTP side of the service: /healthz, /readyz and /metrics, beside the consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[str | None]]  # None when fine, else what is wrong


@dataclass
class Probes:
    """What the endpoints ask; bootstrap fills them in once the pieces exist."""

    ready_checks: dict[str, Check]
    metrics: Callable[[], Awaitable[bytes]]
    check_timeout: float = 2.0
    # More routes on the same server (the support page, support_http.py), added by bootstrap.
    routes: Callable[[web.Application], None] | None = None


def make_app(probes: Probes) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # Alive: the event loop answers. Readiness says whether it can do its work.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        problems: dict[str, str] = {}
        for name, check in probes.ready_checks.items():
            try:
                problem = await asyncio.wait_for(check(), probes.check_timeout)
            except TimeoutError:
                problem = f"no answer within {probes.check_timeout:.0f}s"
            except Exception as exc:  # a probe reports, it never crashes the service
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                problems[name] = problem
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        body = await probes.metrics()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if probes.routes is not None:
        probes.routes(app)
    return app


class HttpServer:
    def __init__(self, probes: Probes, host: str, port: int) -> None:
        self._runner = web.AppRunner(make_app(probes), access_log=None)
        self._host = host
        self._port = port
        self.port: int | None = None

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # the port actually bound (0 asks the system for one)
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        log.info(
            "http listening on %s:%d (/healthz, /readyz, /metrics)",
            self._host,
            self.port,
            extra={"http": {"host": self._host, "port": self.port}},
        )
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
