"""Baseline P: a plain aiokafka passthrough (consume a batch, produce each record to another
topic, commit per batch), the floor the service is compared with: over a backlog (its
throughput), and live under the open-loop generator (its latency).

    python -m tests.bench.passthrough BOOTSTRAP SOURCE DEST GROUP COUNT

It writes `ready` to stderr once it holds its partitions, then a line per batch (its
progress), and exits after COUNT records, printing their rate to stdout. `Passthrough` runs it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS, STALL_SECONDS
from tests.service_process import KILL_SECONDS, STOP_SECONDS


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
    ready = False
    started = time.monotonic()
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not ready and consumer.assignment():
                print("ready", file=sys.stderr, flush=True)
                ready = True
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


class Passthrough:
    """This module in a process of its own. Its stderr is read all along (a live run writes a
    line per batch for as long as the generator sends); it fails after STALL_SECONDS without
    a line."""

    def __init__(self, bootstrap: str, source: str, dest: str, group: str, count: int) -> None:
        self._args = [bootstrap, source, dest, group, str(count)]
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.lines: list[str] = []

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bench.passthrough",
            *self._args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        while True:
            try:
                line = await asyncio.wait_for(self._proc.stderr.readline(), STALL_SECONDS)
            except TimeoutError:
                raise TimeoutError(
                    f"the passthrough made no progress for {STALL_SECONDS}s:\n"
                    + "".join(self.lines)
                ) from None
            if not line:
                return
            text = line.decode(errors="replace")
            if text.strip() == "ready":
                self._ready.set()
            self.lines = [*self.lines[-29:], text]

    async def ready(self) -> None:
        """Until it holds its partitions (or fails: its reader's error is raised)."""
        assert self._reader is not None
        waiting = asyncio.create_task(self._ready.wait())
        await asyncio.wait({waiting, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not self._ready.is_set():
            await self._reader  # raises what stopped it
            raise RuntimeError(
                "the passthrough exited before it was ready:\n" + "".join(self.lines)
            )

    async def finish(self) -> float:
        """Until it has copied COUNT records and exited; returns the rate it printed."""
        assert self._proc is not None
        assert self._proc.stdout is not None
        assert self._reader is not None
        try:
            await self._reader  # its stderr is closed: it exits (having printed its rate)
            out = await asyncio.wait_for(self._proc.stdout.read(), STOP_SECONDS)
            code = await asyncio.wait_for(self._proc.wait(), STOP_SECONDS)
        finally:
            await self.kill()
        if code != 0:
            raise RuntimeError(f"the passthrough exited {code}:\n" + "".join(self.lines))
        return float(out.decode().strip())

    async def kill(self) -> None:
        """If it still runs (a failed run): kill it."""
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        elif self._reader is not None and not self._reader.cancelled():
            # A live run is killed once its samples are in: a stall its reader saw while the
            # generator waited for the last samples is not a failure, and not left unretrieved.
            self._reader.exception()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await asyncio.wait_for(self._proc.wait(), KILL_SECONDS)


def main() -> None:
    bootstrap, source, dest, group, count = sys.argv[1:6]
    seconds = asyncio.run(run(bootstrap, source, dest, group, int(count)))
    print(f"{int(count) / seconds:.1f}")


if __name__ == "__main__":
    main()
