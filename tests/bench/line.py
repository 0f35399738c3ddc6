"""The bench's last line, the one scripts compare: every figure in a fixed order, `NA` where
one is missing (a run without latency, say), ratios computed from what was measured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (name, format): the line's fields in their order.
FIELDS: tuple[tuple[str, str], ...] = (
    ("ratio", ".2f"),
    ("events_per_s", ".0f"),
    ("p99_ms", ".1f"),
    ("p999_ms", ".1f"),
    ("latency_ratio", ".2f"),
    ("bytes_per_customer", ".0f"),
    ("gc_pause_ms", ".2f"),
    ("gc_ratio", ".2f"),
    ("card_ratio", ".2f"),
)


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom


def figures(big: Mapping[str, Any], small: Mapping[str, Any]) -> dict[str, float | None]:
    """The line's figures from the run at many customers (`big`) and at 10,000 (`small`):

    - ratio: the service's throughput / the passthrough's, over the same backlog;
    - latency_ratio: the service's p99 / the passthrough's p99, both live at the same rate;
    - gc_ratio: the longest GC pause while serving / the median time to apply one batch;
    - card_ratio: the throughput at many customers / at 10,000."""
    service = big.get("service_events_per_s")
    return {
        "ratio": _ratio(service, big.get("baseline_events_per_s")),
        "events_per_s": service,
        "p99_ms": big.get("p99_ms"),
        "p999_ms": big.get("p999_ms"),
        "latency_ratio": _ratio(big.get("p99_ms"), big.get("passthrough_p99_ms")),
        "bytes_per_customer": big.get("bytes_per_customer"),
        "gc_pause_ms": big.get("gc_pause_ms"),
        "gc_ratio": _ratio(big.get("gc_pause_ms"), big.get("median_batch_apply_ms")),
        "card_ratio": _ratio(service, small.get("service_events_per_s")),
    }


def align_floor(align_ms: float, passthrough_p99_ms: float | None) -> float | None:
    """The least latency_ratio contract v2 allows in this bench: a due balance waits up to the
    alignment bound for the settings topic, which is idle here, so the service's p99 is at least
    the bound (docs/contract.md, "Order of one customer's events")."""
    return _ratio(align_ms, passthrough_p99_ms) if align_ms > 0 else None


def bench_line(values: Mapping[str, float | None]) -> str:
    """`bench: ratio=R events_per_s=N ... card_ratio=C`, `NA` for a missing figure."""
    parts = []
    for name, spec in FIELDS:
        value = values.get(name)
        parts.append(f"{name}={'NA' if value is None else format(value, spec)}")
    return "bench: " + " ".join(parts)
