"""The outbox relay: publishes outbox rows with an idempotent producer, then marks them.

Rows are leased in a short transaction, published with no transaction open, and marked
published afterwards. A crash between publishing and marking publishes the same records again
(same event ids, which consumers use to de-duplicate); nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from service.adapters.postgres.sql import q
from service.service_layer.worker import Worker

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
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._worker = Worker(
            "outbox-relay", self.publish_once, poll_interval=poll_interval, drain=True
        )
        self.published = 0

    def wake(self) -> None:
        """Called after a transaction committed outbox rows."""
        self._worker.wake()

    def start(self) -> None:
        self._worker.start()

    async def stop(self, timeout: float) -> None:
        """Publishes what is committed (within `timeout`), then stops."""
        if not await self._worker.stop(timeout):
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


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    pairs = json.loads(raw) if isinstance(raw, str) else raw
    return [(name, base64.b64decode(value)) for name, value in pairs]
