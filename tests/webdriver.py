"""A small W3C WebDriver client (aiohttp) for Debian's headless Chromium and its chromedriver
(`make browser` installs both): just what tests/e2e/test_support_page.py needs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DRIVER_START_SECONDS = 30.0  # chromedriver answering /status
REQUEST_SECONDS = 60.0  # one WebDriver command (a new session starts Chromium: slow on a busy box)
DRIVER_STOP_SECONDS = 10.0
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference

# Without these, Chromium's own connections (updates, sync, QUIC) are refused by a closed
# network and slow everything down; a fresh profile each time.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1500",
]


class WebDriverError(RuntimeError):
    pass


def missing_browser() -> str | None:
    """What is missing to drive a browser (None: nothing)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: run `make browser` (Debian's chromium, chromium-driver)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Browser:
    """One WebDriver session: a headless Chromium with a fresh profile."""

    def __init__(self, http: aiohttp.ClientSession, base: str, session_id: str) -> None:
        self._http = http
        self._base = f"{base}/session/{session_id}"

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._http.request(method, self._base + path, json=body) as r:
            answer = await r.json()
        if r.status != 200:
            raise WebDriverError(f"{method} {path}: {r.status} {answer.get('value')}")
        return answer["value"]

    async def get(self, url: str) -> None:
        await self._call("POST", "/url", {"url": url})

    async def find(self, css: str) -> str:
        found = await self._call("POST", "/element", {"using": "css selector", "value": css})
        return str(found[ELEMENT])

    async def type(self, css: str, text: str) -> None:
        element = await self.find(css)
        await self._call("POST", f"/element/{element}/clear", {})
        await self._call("POST", f"/element/{element}/value", {"text": text})

    async def click(self, css: str) -> None:
        await self._call("POST", f"/element/{await self.find(css)}/click", {})

    async def text(self, css: str) -> str:
        return str(await self._call("GET", f"/element/{await self.find(css)}/text"))

    async def script(self, source: str, *args: Any) -> Any:
        return await self._call("POST", "/execute/sync", {"script": source, "args": list(args)})

    async def screenshot(self, path: Path) -> None:
        png = base64.b64decode(await self._call("GET", "/screenshot"))
        await asyncio.to_thread(path.write_bytes, png)

    async def wait_for(
        self, condition: Callable[[], Awaitable[Any]], what: str, timeout: float
    ) -> Any:
        """Until `condition()` is truthy (its value), bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            found = await condition()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.1)  # between two polls of the page, inside the bound


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """chromedriver on a free port, one Chromium session; both gone afterwards."""
    problem = missing_browser()
    if problem is not None:
        raise AssertionError(problem)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="support-chromium-") as profile:
        driver = await asyncio.create_subprocess_exec(
            CHROMEDRIVER,
            f"--port={port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await _until_ready(http, base)
                session_id = await _new_session(http, base, profile)
                try:
                    yield Browser(http, base, session_id)
                finally:
                    async with http.delete(f"{base}/session/{session_id}"):
                        pass
        finally:
            driver.terminate()
            try:
                await asyncio.wait_for(driver.wait(), DRIVER_STOP_SECONDS)
            except TimeoutError:
                driver.kill()
                await asyncio.wait_for(driver.wait(), DRIVER_STOP_SECONDS)


async def _until_ready(http: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + DRIVER_START_SECONDS
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/status") as r:
                if r.status == 200 and (await r.json())["value"].get("ready"):
                    return
        if time.monotonic() > deadline:
            raise AssertionError(f"chromedriver did not answer within {DRIVER_START_SECONDS}s")
        await asyncio.sleep(0.1)  # polling its /status, inside the bound


async def _new_session(http: aiohttp.ClientSession, base: str, profile: str) -> str:
    options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}
    body = {
        "capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
    }
    async with http.post(f"{base}/session", json=body) as r:
        answer = await r.json()
    if r.status != 200:
        raise WebDriverError(f"new session: {r.status} {answer.get('value')}")
    return str(answer["value"]["sessionId"])
