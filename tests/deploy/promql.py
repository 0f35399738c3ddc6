"""What the dashboards and alerting rules may select: the series the service's own registry
exposes (built as the service builds it), and the metric names a PromQL expression selects."""

from __future__ import annotations

import re
from functools import cache

# Series Prometheus adds to every target itself.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# The series each type of metric family is exposed as, by suffix.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


@cache
def exposed_metrics() -> dict[str, str]:
    """The families of the service's registry (as `Metrics()` builds it), by name: their type."""
    from service.entrypoints.metrics import Metrics

    return {family.name: family.type for family in Metrics().registry.collect()}


@cache
def exposed_series() -> frozenset[str]:
    """Every series name the service exposes (suffixes included), and Prometheus' own."""
    series: set[str] = set(SCRAPE_SERIES)
    for name, kind in exposed_metrics().items():
        series |= {name + suffix for suffix in _SUFFIXES.get(kind, ("",))}
    return frozenset(series)


_PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "group_left",
    "group_right",
}
_PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords or label names)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana's variables ($__rate_interval, ...)
    expr = _PROMQL_GROUPING.sub(" ", expr)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        word, call = match.groups()
        if not call and word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names
