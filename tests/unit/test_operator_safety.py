"""What keeps an operator command from doing harm by accident: a redrive needs a selection or
--all, a CSV report never carries a formula, dead letters are selected by time."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.entrypoints.cli import cli
from service.service_layer.dead_letters import DeadLetter, Selection
from service.service_layer.replay import ReplayRow, csv_cell, write_report


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("cust-1", "cust-1"),
        (None, ""),
        (7, 7),
    ],
)
def test_a_csv_cell_never_starts_a_formula(cell: object, written: object) -> None:
    assert csv_cell(cell) == written


def test_the_csv_report_neutralises_what_producers_sent(tmp_path: Path) -> None:
    row = ReplayRow(
        "=cmd|' /C calc'!A0", "t", 0, 1, "@evil", "triggered", None, None, date(2026, 3, 10)
    )
    path = tmp_path / "report.csv"
    write_report(path, [row])
    [written] = list(csv.DictReader(path.open(encoding="utf-8")))
    assert written["customer_id"] == "'=cmd|' /C calc'!A0"
    assert written["event_id"] == "'@evil"
    assert written["business_date"] == "2026-03-10"


def test_a_live_redrive_without_a_selection_needs_all() -> None:
    """Refused before any setting or broker is read: nothing can be published."""
    result = CliRunner().invoke(cli, ["dlq", "redrive"])
    assert result.exit_code == 2
    assert "--all" in result.output


def test_dead_letters_are_selected_by_their_time() -> None:
    at = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    ms = int(at.timestamp() * 1000)
    letters = [
        DeadLetter("dlq", 0, n, ms + delta, b"k", b"v", ()) for n, delta in enumerate((-1, 0, 1))
    ]
    chosen = [d.offset for d in letters if Selection(since=at).matches(d)]
    assert chosen == [1, 2]
    assert Selection(since=at).any
    assert not Selection().any
