"""Stripe's documented idempotency in front of localstripe, which ignores Idempotency-Key.

A POST with a key that was answered before gets the first answer again (Stripe keeps keys
for at least 24 hours); one still in flight makes the second wait. Errors of 500 and above are
not remembered, as at Stripe. Everything else goes through unchanged.

It also counts the PaymentIntents it let localstripe create, per `metadata[daily_key]`: every
charge of a run goes through here, so two for one daily key is a double charge (no need to
list localstripe's PaymentIntents, which it scans whole on every page).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

# localstripe answers in milliseconds; this only stops a proxy call that would never end
# (the services give up on their own Stripe timeout first, and retry under the same key).
UPSTREAM_SECONDS = 300.0
CREATE_PATH = "/v1/payment_intents"


class IdempotentStripe:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._answers: dict[str, tuple[int, bytes, str]] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        self.replayed = 0
        # PaymentIntents created at localstripe (succeeded or declined) per daily key.
        self.payment_intents: Counter[str] = Counter()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A caller that hangs up (a service killed mid-call) must not cut a call to localstripe
        # short: it would have made the charge without the proxy remembering it.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=UPSTREAM_SECONDS))
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
            status, payload, kind = answer.status, await answer.read(), answer.content_type
        if request.method == "POST" and request.path == CREATE_PATH and status in (200, 402):
            # Created, or created and declined (a card error): a charge attempt either way.
            form = parse_qs(body.decode("utf-8", "replace"))
            self.payment_intents[form.get("metadata[daily_key]", [""])[0]] += 1
        return status, payload, kind

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except ConnectionResetError:  # a service killed while it sent: nothing to forward
            raise web.HTTPBadRequest(text="connection lost") from None
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
