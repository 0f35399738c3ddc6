"""The Prometheus alerting rules watch metrics the service really exposes."""

from __future__ import annotations

import re

from tests.deploy.files import ALERTS, load_yaml
from tests.deploy.promql import exposed_metrics, exposed_series, promql_metric_names

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
        unknown = metrics - exposed_series()
        assert not unknown, f"{alert} uses {sorted(unknown)}, which the service does not expose"
        used |= metrics

    assert exposed_series() | exposed_metrics().keys() >= ALERTED
    covered = {m for m in ALERTED if any(u == m or u.startswith(f"{m}_") for u in used)}
    assert covered == ALERTED, f"no alert on {sorted(ALERTED - covered)}"
