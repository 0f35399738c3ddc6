"""The PrometheusRule of the prometheus-operator component, made from deploy/prometheus/alerts.yml:
the same groups and rules, in the operator's custom resource. After editing alerts.yml:

    python -m tests.deploy.prometheus_rule

`tests/deploy/test_observability.py` fails while the two differ."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.files import ALERTS, APP, PROMETHEUS_RULE, load_yaml

HEADER = """\
# Generated from deploy/prometheus/alerts.yml by `python -m tests.deploy.prometheus_rule`: edit
# alerts.yml, then run that (a test fails while the two differ). The Prometheus Operator loads
# it when its Prometheus resource's ruleSelector matches these labels (see kustomization.yaml).
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks, as in alerts.yml."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule(alerts: Any) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": APP, "labels": {"app.kubernetes.io/name": APP}},
        "spec": {"groups": alerts["groups"]},
    }


def render() -> str:
    body = yaml.dump(
        prometheus_rule(load_yaml(ALERTS)),
        Dumper=_Dumper,
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    return HEADER + body


def main() -> None:
    PROMETHEUS_RULE.write_text(render(), encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE.relative_to(ALERTS.parents[2])}")


if __name__ == "__main__":
    main()
