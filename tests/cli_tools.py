"""`auto-topup` as an operator (or a script) runs it, for every test that runs the command:
one runner, `run_cli` (or `run_cli_now` outside an event loop), and one result, `CliRun`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# How long a test waits for an operator command (`auto-topup explain`, `charges`, `dlq`,
# `outbox`, `replay`, or one that fails at start-up) to exit. On an idle machine it is done in a
# second or two; but each run starts an interpreter, imports the service and connects to Kafka
# or PostgreSQL, all slow on a slow, loaded machine, and the command's own bounded waits must
# fit well inside this one (`dlq`'s --timeout, 30 s by default; 10 s to connect to PostgreSQL).
# As long as a test waits for the running service (tests/kafka_tools.py's WAIT_SECONDS).
CLI_SECONDS = 120.0


def cli_command(*args: str) -> list[str]:
    """`auto-topup *args`: the installed script next to this interpreter, else the module."""
    exe = shutil.which("auto-topup", path=str(Path(sys.executable).parent))
    return [exe, *args] if exe else [sys.executable, "-m", "service.main", *args]


@dataclass(frozen=True)
class CliRun:
    """How one run of the command ended: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def ok(self) -> CliRun:
        """This run, asserting that it exited 0."""
        assert self.code == 0, f"exit {self.code}\n{self.out}\n{self.err}"
        return self

    def json(self) -> Any:
        """stdout as one JSON document (the run must have exited 0)."""
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return json.loads(self.out)

    def json_lines(self) -> list[dict[str, Any]]:
        """stdout as one JSON object per line."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def rows(self) -> list[list[str]]:
        """The body rows of every table printed, as lists of cells."""
        return [
            [cell.strip() for cell in line.split("│")[1:-1]]
            for line in self.out.splitlines()
            if line.startswith("│")
        ]


def run_cli_now(
    env: Mapping[str, str],
    *args: str,
    columns: int | None = None,
    inherit: bool = True,
    timeout: float = CLI_SECONDS,
) -> CliRun:
    """`auto-topup *args` as an operator runs it: stdin closed (never asked to confirm), stdout
    and stderr piped; waits for it to exit, at most `timeout` (then kills it, and fails).

    `env` goes on top of the test's environment, or is the whole environment with
    `inherit=False`. `columns` is the width of its tables (COLUMNS); without it, no COLUMNS or
    LINES is passed on from the test's environment (piped output has no terminal width)."""
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    width = {} if columns is None else {"COLUMNS": str(columns)}
    try:
        done = subprocess.run(
            cli_command(*args),
            env={**(base if inherit else {}), **env, **width},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:  # killed by subprocess.run
        raise AssertionError(
            f"`auto-topup {' '.join(args)}` did not exit within {timeout:g}s"
        ) from None
    return CliRun(done.returncode, done.stdout.decode(), done.stderr.decode())


async def run_cli(
    env: Mapping[str, str],
    *args: str,
    columns: int | None = None,
    inherit: bool = True,
    timeout: float = CLI_SECONDS,
) -> CliRun:
    """`run_cli_now` without blocking the event loop (the test's service and readers go on)."""
    return await asyncio.to_thread(
        run_cli_now, env, *args, columns=columns, inherit=inherit, timeout=timeout
    )
