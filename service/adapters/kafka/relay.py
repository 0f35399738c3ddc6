"""The outbox relay: publishes outbox rows with an idempotent producer, then marks them.

Rows are leased in a short transaction, published with no transaction open, and marked
published afterwards. A crash between publishing and marking publishes the same records again
(same event ids, which consumers use to de-duplicate); nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from service.adapters.postgres.sql import q

log = logging.getLogger(__name__)


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="auto-topup-relay",
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=15000,
    )


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 1000,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def wake(self) -> None:
        """Called after a transaction committed outbox rows."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout: float) -> None:
        """Publishes what is committed (within `timeout`), then stops."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.warning(
                    "outbox relay did not drain within %.1fs; the rest is published "
                    "after the next start",
                    timeout,
                )

    async def close(self) -> None:
        await self._producer.stop()

    async def publish_once(self) -> int:
        """Leases, publishes and marks one batch; returns how many records it published."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(q("lease_outbox"), self._batch_size, self._lease_seconds)
        if not rows:
            return 0
        rows = sorted(rows, key=lambda r: r["id"])
        futures = [
            await self._producer.send(
                r["topic"], value=r["value"], key=r["key"], headers=_headers(r["headers"])
            )
            for r in rows
        ]
        await asyncio.gather(*futures)
        async with self._pool.acquire() as conn:
            await conn.execute(q("mark_published"), [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            self._wake.clear()  # before the lease: a wake during it is not lost
            try:
                published = await self.publish_once()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient: database or broker away; retry, never skip
                log.warning(
                    "outbox relay: %s: %s; retrying in %.1fs", type(exc).__name__, exc, backoff
                )
                if self._stopping.is_set():
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if published:
                continue
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    pairs = json.loads(raw) if isinstance(raw, str) else raw
    return [(name, base64.b64decode(value)) for name, value in pairs]
