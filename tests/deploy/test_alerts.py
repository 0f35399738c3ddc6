"""The Prometheus alerting rules watch metrics the service really exposes."""

from __future__ import annotations

import re

from tests.deploy.files import ALERTS, load_yaml

ALERTED = frozenset(
    {
        "auto_topup_consumer_lag",
        "auto_topup_outbox_backlog",
        "auto_topup_outbox_set_aside",
        "auto_topup_dead_letters_total",
        "auto_topup_decisions_total",
        "auto_topup_stripe_call_seconds",
        "auto_topup_batch_seconds",
        "auto_topup_events_consumed_total",
        "auto_topup_stripe_charges_needs_review",
        "auto_topup_stripe_oldest_unresolved_charge_age_seconds",
        "up",
    }
)


def exposed_metrics() -> dict[str, str]:
    """What the service really exposes (its registry), and their types; plus Prometheus' up."""
    from service.entrypoints.metrics import Metrics

    metrics = {"up": "gauge"}
    for family in Metrics().registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        metrics[family.name + suffix] = family.type
    return metrics


# ---------------------------------------------------------------- Prometheus alerting rules

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
    expr = _PROMQL_GROUPING.sub(" ", expr)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        word, call = match.groups()
        if not call and word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names


def allowed_series() -> set[str]:
    series: set[str] = set()
    for name, kind in exposed_metrics().items():
        if kind == "histogram":
            series |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        else:
            series.add(name)
    return series


def test_promql_metric_names_finds_what_an_expression_selects() -> None:
    expr = (
        'sum by (topic) (rate(auto_topup_x_total{outcome="failed", a=~"b|c"}[5m] offset 1m))'
        " / on (topic) group_left sum(up) > 1e-3 and absent(auto_topup_y)"
        " unless histogram_quantile(0.99, sum by (le) (rate(z_bucket[10m:1m])))"
    )
    assert promql_metric_names(expr) == {"auto_topup_x_total", "up", "auto_topup_y", "z_bucket"}


def test_alerting_rules() -> None:
    rules_file = load_yaml(ALERTS)
    assert set(rules_file) == {"groups"}
    rules = [rule for group in rules_file["groups"] for rule in group["rules"]]
    assert all({"name", "rules"} <= group.keys() for group in rules_file["groups"])
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"

    used: set[str] = set()
    for rule in rules:
        alert = rule["alert"]
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, alert
        assert rule["annotations"]["summary"], alert
        assert re.fullmatch(r"(\d+[smhd])+", rule.get("for", "0s")), alert
        metrics = promql_metric_names(rule["expr"])
        assert metrics, f"{alert} selects no metric"
        unknown = metrics - allowed_series()
        assert not unknown, f"{alert} uses {sorted(unknown)}, which the service does not expose"
        used |= metrics

    assert exposed_metrics().keys() >= ALERTED
    covered = {m for m in ALERTED if any(u == m or u.startswith(f"{m}_") for u in used)}
    assert covered == ALERTED, f"no alert on {sorted(ALERTED - covered)}"
