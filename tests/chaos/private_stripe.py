"""A localstripe of the run's own: in memory, on a free port of 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

LAUNCHER = Path(__file__).resolve().parents[2] / "deploy" / "local" / "localstripe_launch.py"
START_SECONDS = 120.0  # until it answers (an interpreter start and imports, on a slow core)
PROBE_SECONDS = 5.0  # one probe of a local, empty server
STOP_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateStripe:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_SECONDS) -> str:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                str(LAUNCHER),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--in-memory",
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.url}/v1/customers", auth=("sk_test_x", ""), timeout=PROBE_SECONDS)
                return self.url
            except httpx.HTTPError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)  # polling a condition, with a deadline

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(STOP_SECONDS)
