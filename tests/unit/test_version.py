"""`auto-topup --version` and the version the package reports."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

import service
from service.entrypoints.cli import cli

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def project_version() -> str:
    with PYPROJECT.open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert isinstance(version, str)
    return version


def test_the_package_reports_the_projects_version() -> None:
    assert service.__version__ == project_version()


def test_version_option_prints_the_name_and_version_and_exits_0() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"auto-topup {project_version()}\n"


def test_version_option_of_the_installed_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"auto-topup {project_version()}\n"


def test_the_package_is_typed() -> None:
    assert (Path(service.__file__).parent / "py.typed").is_file()
