"""The ServiceMonitor and the PrometheusRule of deploy/k8s/components/prometheus-operator validate
against schemas written here from the Prometheus Operator's API reference
(monitoring.coreos.com/v1), for the fields these manifests may use; anything else is rejected,
like the KEDA ScaledObject in test_k8s_schemas.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.files import (
    PROMETHEUS_RULE,
    SERVICE_MONITOR,
    STRING_MAP,
    Doc,
    custom_resource,
    load_yaml,
    schema_errors,
)

# The operator's Duration: e.g. 30s, 1m30s, 5m (Prometheus' duration without the sign).
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$",
}


def _object(kind: str, spec: Doc) -> Doc:
    return custom_resource("monitoring.coreos.com/v1", kind, spec)


SERVICE_MONITOR_SCHEMA = _object(
    "ServiceMonitor",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["selector", "endpoints"],
        "properties": {
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"matchLabels": STRING_MAP},
            },
            "namespaceSelector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
            },
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "honorLabels": {"type": "boolean"},
                    },
                },
            },
        },
    },
)

PROMETHEUS_RULE_SCHEMA = _object(
    "PrometheusRule",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": _DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["alert", "expr"],
                                "properties": {
                                    "alert": {"type": "string", "minLength": 1},
                                    "expr": {"type": ["string", "integer"]},
                                    "for": _DURATION,
                                    "keep_firing_for": _DURATION,
                                    "labels": STRING_MAP,
                                    "annotations": STRING_MAP,
                                },
                            },
                        },
                    },
                },
            }
        },
    },
)


@pytest.mark.parametrize(
    ("path", "schema"),
    [(SERVICE_MONITOR, SERVICE_MONITOR_SCHEMA), (PROMETHEUS_RULE, PROMETHEUS_RULE_SCHEMA)],
    ids=lambda v: v.name if isinstance(v, Path) else "",
)
def test_custom_resource_matches_its_schema(path: Path, schema: Doc) -> None:
    errors = schema_errors(schema, load_yaml(path))
    assert not errors, f"{path.name}:\n" + "\n".join(errors)
