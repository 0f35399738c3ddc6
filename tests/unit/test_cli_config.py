"""`auto-topup config check` and `config show`, and the variables `run --help` lists: all read
from the Settings model, secrets never shown."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from service.config import Settings
from service.entrypoints.cli import cli
from service.entrypoints.cli_config import variables

PASSWORD = "canary-pw-5150"
STRIPE_KEY = "sk_test_canary5150"
EVERY_VARIABLE = [name for field in Settings.model_fields.values() for name in variables(field)]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the test's own environment (a local stack's settings) leaks in."""
    for name in EVERY_VARIABLE:
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_says_ok_for_the_defaults() -> None:
    assert invoke("config", "check") == (0, "ok\n", "")


def test_check_prints_one_line_per_bad_setting_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTO_TOPUP_HTTP_PORT", "eighty")
    monkeypatch.setenv("AUTO_TOPUP_DEFAULT_TIMEZONE", "Mars/Olympus")
    code, out, err = invoke("config", "check")
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("configuration error: AUTO_TOPUP_DEFAULT_TIMEZONE: ")
    assert lines[1].startswith("configuration error: AUTO_TOPUP_HTTP_PORT: ")


def test_check_run_requires_the_stripe_key(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = invoke("config", "check", "--run")
    assert code == 2
    assert err == "configuration error: STRIPE_API_KEY: Field required\n"
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    assert invoke("config", "check", "--run") == (0, "ok\n", "")


def test_a_bad_setting_is_named_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"mysql://app:{PASSWORD}@db/x")
    code, out, err = invoke("config", "check")
    assert code == 2
    assert "DATABASE_URL" in err
    assert PASSWORD not in out + err


def test_show_lists_every_setting_once_with_its_source_and_secrets_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{PASSWORD}@db.internal:5432/topup")
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setenv("AUTO_TOPUP_BATCH_MAX_RECORDS", "500")
    code, out, err = invoke("config", "show", "--json")
    assert (code, err) == (0, "")
    assert PASSWORD not in out
    assert STRIPE_KEY not in out
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert sorted(rows) == sorted(variables(f)[0] for f in Settings.model_fields.values())
    assert rows["DATABASE_URL"] == {
        "name": "DATABASE_URL",
        "value": "postgresql://app:***@db.internal:5432/topup",
        "source": "environment",
    }
    assert rows["STRIPE_API_KEY"]["value"] == "***"
    assert rows["AUTO_TOPUP_BATCH_MAX_RECORDS"] == {
        "name": "AUTO_TOPUP_BATCH_MAX_RECORDS",
        "value": 500,
        "source": "environment",
    }
    assert rows["AUTO_TOPUP_HTTP_PORT"] == {
        "name": "AUTO_TOPUP_HTTP_PORT",
        "value": 8080,
        "source": "default",
    }
    assert rows["STRIPE_API_BASE"]["value"] is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://app@db/x?password={PASSWORD}&sslmode=require",
            "postgresql://app@db/x?password=***&sslmode=require",
        ),
        (
            f"postgresql://app:{PASSWORD}@db/x?sslpassword={PASSWORD}",
            "postgresql://app:***@db/x?sslpassword=***",
        ),
    ],
)
def test_show_masks_a_password_given_in_the_query(
    monkeypatch: pytest.MonkeyPatch, url: str, shown: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    code, out, _ = invoke("config", "show", "--json")
    assert code == 0
    assert PASSWORD not in out
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert rows["DATABASE_URL"]["value"] == shown


def test_show_as_text_is_one_row_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    code, out, _ = invoke("config", "show")
    assert code == 0
    assert STRIPE_KEY not in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert len(rows) == len(Settings.model_fields)
    assert rows["STRIPE_API_KEY"] == ["environment", "***"]
    assert rows["KAFKA_BOOTSTRAP_SERVERS"] == ["default", "localhost:9092"]
    assert rows["STRIPE_API_BASE"] == ["default", "(unset)"]


def test_run_help_lists_every_environment_variable() -> None:
    import service.main  # noqa: F401  (it adds `run` to the operator commands)

    result = CliRunner().invoke(cli, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for field in Settings.model_fields.values():
        assert variables(field)[0] in result.stdout
    assert "AUTO_TOPUP_MIGRATE_ON_START" in result.stdout
