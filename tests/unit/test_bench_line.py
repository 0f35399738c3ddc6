"""`make bench`'s last line: its fields in order, NA for what was not measured, the ratios."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench.line import FIELDS, align_floor, bench_line, figures

BIG: dict[str, Any] = {
    "service_events_per_s": 20_000.0,
    "baseline_events_per_s": 50_000.0,
    "p99_ms": 300.0,
    "p999_ms": 400.0,
    "passthrough_p99_ms": 25.0,
    "bytes_per_customer": 41.4,
    "gc_pause_ms": 21.0,
    "median_batch_apply_ms": 70.0,
}
SMALL: dict[str, Any] = {"service_events_per_s": 25_000.0}


def test_the_fields_in_their_order() -> None:
    line = bench_line(figures(BIG, SMALL))
    assert line == (
        "bench: ratio=0.40 events_per_s=20000 p99_ms=300.0 p999_ms=400.0 latency_ratio=12.00 "
        "bytes_per_customer=41 gc_pause_ms=21.00 gc_ratio=0.30 card_ratio=0.80"
    )
    names = [part.split("=")[0] for part in line.removeprefix("bench: ").split()]
    assert names == [name for name, _ in FIELDS]


def test_the_ratios_come_from_the_inputs() -> None:
    values = figures(BIG, SMALL)
    assert values["ratio"] == pytest.approx(20_000 / 50_000)
    assert values["latency_ratio"] == pytest.approx(300 / 25)
    assert values["gc_ratio"] == pytest.approx(21 / 70)
    assert values["card_ratio"] == pytest.approx(20_000 / 25_000)


def test_a_run_without_latency_says_na() -> None:
    big = {k: v for k, v in BIG.items() if k not in ("p99_ms", "p999_ms", "passthrough_p99_ms")}
    line = bench_line(figures(big, SMALL))
    assert " p99_ms=NA p999_ms=NA latency_ratio=NA " in line
    assert line.startswith("bench: ratio=0.40 ")
    assert line.endswith(" gc_ratio=0.30 card_ratio=0.80")


@pytest.mark.parametrize(
    ("missing", "field"),
    [
        ("passthrough_p99_ms", "latency_ratio"),
        ("median_batch_apply_ms", "gc_ratio"),
        ("baseline_events_per_s", "ratio"),
    ],
)
def test_a_ratio_without_its_denominator_is_na(missing: str, field: str) -> None:
    for absent in (None, 0.0):
        values = figures({**BIG, missing: absent}, SMALL)
        assert values[field] is None
        assert f" {field}=NA" in bench_line(values)


def test_an_older_service_without_a_median_batch_time() -> None:
    big = {k: v for k, v in BIG.items() if k != "median_batch_apply_ms"}
    line = bench_line(figures(big, {}))
    assert line.endswith(" gc_pause_ms=21.00 gc_ratio=NA card_ratio=NA")


def test_every_field_missing() -> None:
    assert bench_line({}) == "bench: " + " ".join(f"{name}=NA" for name, _ in FIELDS)


def test_the_least_latency_ratio_the_alignment_bound_allows() -> None:
    # a 500 ms bound against a passthrough p99 of 45 ms: the service's p99 is at least 500 ms
    assert align_floor(500, 45.0) == pytest.approx(11.11, abs=0.01)
    assert align_floor(0, 45.0) is None  # no wait: no floor
    assert align_floor(500, None) is None
