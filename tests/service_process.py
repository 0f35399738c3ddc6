"""Runs `auto-topup run` as a subprocess, the way an operator would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.cli_tools import cli_command

# Waits for conditions (a log line, an exit), with generous bounds: the service starts in a
# couple of seconds, but it waits for a broker or a database that is restarting, and a slow
# machine is slow at everything.
START_SECONDS = 180.0  # until it logs that it consumes
LOG_SECONDS = 60.0  # until it logs a line a test expects
STOP_SECONDS = 120.0  # SIGTERM to exit: it may finish a batch, Stripe calls and the outbox
READER_SECONDS = 10.0  # its stderr closing after it exited
KILL_SECONDS = 30.0  # SIGKILL to exit: at once, unless the kernel is slow to let it go

TOPIC_NAMES = {
    "WALLET_BALANCE_CHANGED": "wallet-balance-changed",
    "SETTINGS_UPDATED": "settings-updated",
    "INVOICE_REQUESTED": "invoice-requested",
    "CREDIT_ISSUED": "credit-issued",
    "TOP_UP_FAILED": "top-up-failed",
    "AUTO_TOPUP_DEAD_LETTER": "auto-topup-dead-letter",
    "INVOICE_STATUS_CHANGED": "invoice-status-changed",
    "AUTO_TOPUP_NOTICE": "auto-topup-notice",
}


def command() -> list[str]:
    return cli_command("run")


@dataclass
class Topics:
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __getitem__(self, name: str) -> str:
        return f"{TOPIC_NAMES[name]}.{self.suffix}"

    def env(self) -> dict[str, str]:
        return {f"AUTO_TOPUP_TOPIC_{k}": self[k] for k in TOPIC_NAMES}


class ServiceProcess:
    def __init__(self, env: dict[str, str], name: str = "svc") -> None:
        self.env = env
        self.name = name
        self.lines: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()

    def start(self, timeout: float = START_SECONDS, until: str = "auto-topup is consuming") -> None:
        """Starts the service and waits until it logs `until`. Its HTTP port is chosen by the
        system unless the env sets AUTO_TOPUP_HTTP_PORT (see `http_port`)."""
        self.lines = []
        self._proc = subprocess.Popen(
            command(),
            env={**os.environ, "AUTO_TOPUP_HTTP_PORT": "0", **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for_log(until, timeout)

    @property
    def http_port(self) -> int:
        """The port of /healthz, /readyz and /metrics, from the service's start-up log."""
        line = self.wait_for_log("http listening on")
        port: int = json.loads(line)["http"]["port"]
        return port

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_log(self, text: str, timeout: float = LOG_SECONDS) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self._proc is not None and self._proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name} exited ({self._proc.returncode}) before "
                        f"logging {text!r}:\n" + "\n".join(self.lines[-30:])
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name} did not log {text!r} within {timeout}s:\n"
                        + "\n".join(self.lines[-30:])
                    )
                self._changed.wait(left)

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(KILL_SECONDS)
            raise AssertionError(f"{self.name} did not stop within {timeout}s") from None
        if self._reader is not None:
            self._reader.join(READER_SECONDS)
        return code

    def kill(self) -> None:
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait(KILL_SECONDS)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
