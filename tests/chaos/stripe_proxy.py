"""Stripe's documented idempotency in front of localstripe, which ignores Idempotency-Key.

A POST with a key that was answered before gets the first answer again (Stripe keeps keys
for at least 24 hours); one still in flight makes the second wait. Errors of 500 and above are
not remembered, as at Stripe. Everything else goes through unchanged.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import aiohttp
from aiohttp import web


class IdempotentStripe:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._answers: dict[str, tuple[int, bytes, str]] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        self.replayed = 0

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes, str]:
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "stripe-version")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            return answer.status, await answer.read(), answer.content_type

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            status, payload, kind = await self._forward(request, body)
            return web.Response(status=status, body=payload, content_type=kind)
        async with self._locks[key]:
            if key in self._answers:
                self.replayed += 1
                status, payload, kind = self._answers[key]
                return web.Response(
                    status=status,
                    body=payload,
                    content_type=kind,
                    headers={"Idempotent-Replayed": "true"},
                )
            status, payload, kind = await self._forward(request, body)
            if status < 500:
                self._answers[key] = (status, payload, kind)
            return web.Response(status=status, body=payload, content_type=kind)
