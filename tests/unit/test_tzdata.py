"""The pinned tzdata package decides every zone, not the host's zone files.

zoneinfo reads the system's files first (TZPATH) and falls back to the tzdata package, so two
hosts with different system tzdata could disagree on a business date. `auto-topup` empties
TZPATH at start (`service.main.use_pinned_tzdata`). These tests put a wrong "Europe/Paris"
(a copy of UTC) where the host's files would be and show that it no longer counts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from service.domain.calendar import business_date, zone
from service.main import use_pinned_tzdata

SUMMER = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)  # 01:30 on 2 July in Paris (UTC+2)
# How long the `auto-topup --version` subprocess may take (it imports the whole service).
SUBPROCESS_SECONDS = 120.0


@pytest.fixture
def fake_system_zones(tmp_path: Path) -> Iterator[Path]:
    """A zone directory whose Europe/Paris is UTC, made the TZPATH; restored afterwards."""
    utc = resources.files("tzdata").joinpath("zoneinfo", "UTC")
    for name in ("Europe/Paris", "Test/OnlyOnThisHost"):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with resources.as_file(utc) as source:
            shutil.copyfile(source, target)
    zoneinfo.reset_tzpath(to=[str(tmp_path)])
    zoneinfo.ZoneInfo.clear_cache()
    zone.cache_clear()
    try:
        yield tmp_path
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()
        zone.cache_clear()


def test_without_the_pin_the_host_files_win(fake_system_zones: Path) -> None:
    # The premise: a system file shadows the package, so the dates would follow the host.
    assert zoneinfo.ZoneInfo("Europe/Paris").utcoffset(SUMMER) == timedelta(0)
    assert business_date(SUMMER, "Europe/Paris") == date(2026, 7, 1)


def test_the_pin_makes_the_tzdata_package_decide(fake_system_zones: Path) -> None:
    use_pinned_tzdata()
    assert zoneinfo.TZPATH == ()
    assert zoneinfo.ZoneInfo("Europe/Paris").utcoffset(SUMMER) == timedelta(hours=2)
    assert business_date(SUMMER, "Europe/Paris") == date(2026, 7, 2)
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        zoneinfo.ZoneInfo("Test/OnlyOnThisHost")


def test_the_command_pins_it_at_start_even_against_pythontzpath(tmp_path: Path) -> None:
    probe = (
        "import sys, zoneinfo\n"
        "from service.main import main\n"
        "sys.argv = ['auto-topup', '--version']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TZPATH', zoneinfo.TZPATH)\n"
    )
    env = {**os.environ, "PYTHONTZPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "TZPATH ()", done.stdout + done.stderr
