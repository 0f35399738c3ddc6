"""The operator pack holds together: the dashboard and the alerting rules use only series the
service's registry exposes, every alert links to its section of docs/runbook.md, the
PrometheusRule holds exactly the rules of alerts.yml, and the ServiceMonitor scrapes the pods
of the Service with the label the rules select by."""

from __future__ import annotations

import json
import platform
import re
from typing import Any

from service import __version__
from tests.deploy.files import (
    ALERTS,
    DASHBOARD,
    PROMETHEUS_OPERATOR,
    PROMETHEUS_RULE,
    RUNBOOK,
    SERVICE_MONITOR,
    load_yaml,
    manifests,
)
from tests.deploy.prometheus_rule import prometheus_rule
from tests.deploy.promql import exposed_series, promql_metric_names

# The label the rules select the instances by, and the Service label it is copied from.
INSTANCE_LABEL = ("app_kubernetes_io_name", "app.kubernetes.io/name")

# What the dashboard must show (issue: lag by partition, event age, decisions, dead letters,
# outbox, Stripe latency and unresolved charges, process CPU and memory).
DASHBOARD_SERIES = frozenset(
    {
        "auto_topup_consumer_lag",
        "auto_topup_event_age_seconds_bucket",
        "auto_topup_decisions_total",
        "auto_topup_dead_letters_total",
        "auto_topup_outbox_backlog",
        "auto_topup_outbox_set_aside",
        "auto_topup_stripe_call_seconds_bucket",
        "auto_topup_stripe_charges_needs_review",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    }
)


def alert_rules(doc: Any) -> list[dict[str, Any]]:
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its variables'."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query["query"])
            assert found, f"variable {variable['name']}: {query['query']}"
            exprs.append(found.group(1))
    return exprs


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors: set[str] = set()
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# ---------------------------------------------------------------- the service's registry


def test_the_registry_has_the_process_gc_and_build_metrics() -> None:
    from service.entrypoints.metrics import Metrics

    registry = Metrics().registry
    build = {"version": __version__, "python": platform.python_version()}
    assert registry.get_sample_value("auto_topup_build_info", build) == 1
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 0
    assert registry.get_sample_value("process_cpu_seconds_total") is not None
    assert registry.get_sample_value("python_gc_collections_total", {"generation": "0"}) is not None


def test_the_series_names_carry_their_suffixes() -> None:
    series = exposed_series()
    assert {"auto_topup_batch_seconds_bucket", "auto_topup_batch_seconds_count"} <= series
    assert {"auto_topup_decisions_total", "process_cpu_seconds_total", "up"} <= series
    assert "auto_topup_batch_seconds" not in series, "a histogram is only its series"


# ---------------------------------------------------------------- metric names


def test_the_dashboard_uses_only_exposed_series_and_shows_what_operators_need() -> None:
    used: set[str] = set()
    for expr in dashboard_expressions():
        names = promql_metric_names(expr)
        assert names, f"selects no metric: {expr}"
        unknown = names - exposed_series()
        assert not unknown, f"the service does not expose {sorted(unknown)}: {expr}"
        used |= names
    assert used >= DASHBOARD_SERIES, f"not on the dashboard: {sorted(DASHBOARD_SERIES - used)}"


def test_the_alerting_rules_use_only_exposed_series() -> None:
    for source in (ALERTS, PROMETHEUS_RULE):
        doc = load_yaml(source)
        rules = alert_rules(doc if source == ALERTS else doc["spec"])
        for rule in rules:
            unknown = promql_metric_names(rule["expr"]) - exposed_series()
            assert not unknown, f"{source.name} {rule['alert']}: {sorted(unknown)}"


def test_the_rules_select_instances_by_a_label_the_scraping_sets() -> None:
    label, service_label = INSTANCE_LABEL
    app = manifests()["Service"]["metadata"]["labels"][service_label]
    for rule in alert_rules(load_yaml(ALERTS)):
        assert "job=" not in rule["expr"], f"{rule['alert']}: no job name is the same everywhere"
        if "up" in promql_metric_names(rule["expr"]):
            assert f'up{{{label}="{app}"}}' in rule["expr"], rule["alert"]


# ---------------------------------------------------------------- runbook


def test_every_alert_links_to_its_section_of_the_runbook() -> None:
    anchors = github_anchors(RUNBOOK.read_text(encoding="utf-8"))
    rules = alert_rules(load_yaml(ALERTS))
    bases = set()
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base.endswith("/docs/runbook.md"), f"{rule['alert']}: {url}"
        assert anchor in anchors, f"{rule['alert']}: no heading #{anchor} in docs/runbook.md"
        assert anchor == rule["alert"].lower(), f"{rule['alert']}: another alert's section"
        bases.add(base)
    assert len(bases) == 1, f"one place serves the runbook: {sorted(bases)}"
    sections = {a for a in anchors if a.startswith("autotopup")}
    assert sections == {rule["alert"].lower() for rule in rules}, "a section with no alert"


def test_github_anchors() -> None:
    text = "# Runbook\n## AutoTopupDown\ntext\n### Exit codes (all)\n"
    assert github_anchors(text) == {"runbook", "autotopupdown", "exit-codes-all"}


# ---------------------------------------------------------------- Prometheus Operator


def test_the_prometheus_rule_holds_the_rules_of_alerts_yml() -> None:
    generated = prometheus_rule(load_yaml(ALERTS))
    assert load_yaml(PROMETHEUS_RULE) == generated, (
        "prometheusrule.yaml differs from alerts.yml: run python -m tests.deploy.prometheus_rule"
    )


def test_the_component_scrapes_the_services_pods() -> None:
    component = load_yaml(PROMETHEUS_OPERATOR / "kustomization.yaml")
    assert component["kind"] == "Component"
    assert component["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert sorted(component["resources"]) == sorted(
        p.name for p in PROMETHEUS_OPERATOR.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    (patch,) = component["patches"]
    service = manifests()["Service"]
    assert patch["target"] == {"kind": "Service", "name": service["metadata"]["name"]}
    assert "prometheus.io~1scrape" in patch["patch"], "no second scrape by annotation"

    monitor = load_yaml(SERVICE_MONITOR)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    spec = monitor["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector
    assert selector.items() <= service["metadata"]["labels"].items()
    assert INSTANCE_LABEL[1] in spec["targetLabels"]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == service["metadata"]["annotations"]["prometheus.io/path"]
    rule = load_yaml(PROMETHEUS_RULE)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
