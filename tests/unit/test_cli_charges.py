"""`auto-topup charges resolve`: bad usage is exit code 2, and nothing is read or written
(the arguments are checked before the settings are loaded or PostgreSQL is reached)."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from service.entrypoints.cli import cli
from service.entrypoints.cli_charges import parse_daily_key

KEY = "cust-1/2026-11-25"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([KEY, "--by", "alice", "--why", "x"], id="neither-outcome"),
        pytest.param(
            [KEY, "--failed", "--succeeded", "pi_1", "--by", "a", "--why", "x"], id="both"
        ),
        pytest.param([KEY, "--succeeded", "ch_1", "--by", "a", "--why", "x"], id="not-a-pi"),
        pytest.param(
            [KEY, "--succeeded", "pi_1", "--reason", "x", "--by", "a", "--why", "x"],
            id="reason-without-failed",
        ),
        pytest.param(
            [KEY, "--failed", "--reason", "Not Snake", "--by", "a", "--why", "x"], id="bad-reason"
        ),
        pytest.param(["no-date", "--failed", "--by", "a", "--why", "x"], id="no-date"),
        pytest.param(["/2026-11-25", "--failed", "--by", "a", "--why", "x"], id="no-customer"),
        pytest.param(["c/2026-13-01", "--failed", "--by", "a", "--why", "x"], id="bad-date"),
        pytest.param([KEY, "--failed", "--why", "x"], id="no-by"),
        pytest.param([KEY, "--failed", "--by", "a"], id="no-why"),
        pytest.param([KEY, "--failed", "--by", " ", "--why", "x"], id="blank-by"),
        pytest.param([KEY, "--failed", "--by", "a", "--why", " "], id="blank-why"),
    ],
)
def test_bad_usage_exits_2(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Unreachable: a run that got past the checks would fail otherwise than with code 2.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")

    result = CliRunner().invoke(cli, ["charges", "resolve", *args])

    assert result.exit_code == 2, result.output


def test_a_daily_key_is_split_at_its_last_slash() -> None:
    assert parse_daily_key("cust-1/2026-11-25") == ("cust-1", date(2026, 11, 25))
