"""`auto-topup outbox`: bad usage is exit code 2 before anything is read or written, and what
it prints of a record cannot drive the operator's terminal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from service.entrypoints.cli import cli
from service.entrypoints.cli_support import printable


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="nothing"),
        pytest.param(["7", "--all"], id="both"),
        pytest.param(["seven"], id="not-a-number"),
        pytest.param(["0"], id="zero"),
        pytest.param(["--", "-3"], id="negative"),
    ],
)
def test_bad_usage_exits_2(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Unreachable: a run that got past the checks would fail otherwise than with code 2.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")

    result = CliRunner().invoke(cli, ["outbox", "retry", *args])

    assert result.exit_code == 2, result.output


def test_unreachable_database_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")

    for args in (["list"], ["retry", "--all"], ["retry", "3"]):
        result = CliRunner().invoke(cli, ["outbox", *args])
        assert result.exit_code == 1, result.output
        assert "cannot reach PostgreSQL" in result.output


def test_control_characters_are_shown_as_escapes() -> None:
    assert printable("cust-1") == "cust-1"
    assert printable("a\x1b[2Jb\x07\u202e\n") == "a\\x1b[2Jb\\x07\\u202e\\x0a"
