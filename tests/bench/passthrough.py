"""Baseline P: a plain aiokafka passthrough (consume a batch, produce each record to another
topic, commit per batch), the floor the service is compared with.

    python -m tests.bench.passthrough BOOTSTRAP SOURCE DEST GROUP COUNT
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS


async def run(bootstrap: str, source: str, dest: str, group: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
    )
    await consumer.start()
    await producer.start()
    seen = 0
    started = time.monotonic()
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            futures = []
            for records in batches.values():
                for r in records:
                    futures.append(await producer.send(dest, r.value, key=r.key))
                seen += len(records)
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
                print(seen, file=sys.stderr, flush=True)  # progress, for the caller's wait
    finally:
        await producer.stop()
        await consumer.stop()
    return time.monotonic() - started


def main() -> None:
    bootstrap, source, dest, group, count = sys.argv[1:6]
    seconds = asyncio.run(run(bootstrap, source, dest, group, int(count)))
    print(f"{int(count) / seconds:.1f}")


if __name__ == "__main__":
    main()
