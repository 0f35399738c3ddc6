"""Every Kubernetes manifest in deploy/k8s validates, strictly (unknown fields rejected),
against the official JSON schemas of one pinned Kubernetes version (bundled by
kubernetes-validate, so no network is needed); the KEDA ScaledObject, a custom resource,
against a schema written here from KEDA's documentation."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy.files import (
    K8S,
    KUBERNETES_VERSION,
    STRING_MAP,
    Doc,
    custom_resource,
    load_yaml,
    manifest_files,
    manifests,
    schema_errors,
)

# ---------------------------------------------------------------- Kubernetes: schemas


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert set(manifests()) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
        "TriggerAuthentication",
    }


# From KEDA's ScaledObject specification and its Apache Kafka scaler page (keda.sh/docs), for
# the fields these manifests may use; anything else is rejected. Trigger metadata values are
# strings (the CRD's metadata is a map of strings).
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_STRING_MAP = STRING_MAP
_BOOL_STRING = {"enum": ["true", "false"]}
_HPA_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}
KAFKA_TRIGGER_METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["bootstrapServers", "consumerGroup"],
    "properties": {
        "bootstrapServers": {"type": "string", "minLength": 1},
        "consumerGroup": {"type": "string", "minLength": 1},
        "topic": {"type": "string", "minLength": 1},
        "lagThreshold": {"type": "string", "pattern": r"^[1-9][0-9]*$"},
        "activationLagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
        "offsetResetPolicy": {"enum": ["latest", "earliest"]},
        "allowIdleConsumers": _BOOL_STRING,
        "scaleToZeroOnInvalidOffset": _BOOL_STRING,
        "excludePersistentLag": _BOOL_STRING,
        "limitToPartitionsWithLag": _BOOL_STRING,
        "ensureEvenDistributionOfPartitions": _BOOL_STRING,
        "version": {"type": "string"},
        "partitionLimitation": {
            "type": "string",
            "pattern": r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$",
        },
        "sasl": {
            "enum": ["plaintext", "scram_sha256", "scram_sha512", "gssapi", "oauthbearer", "none"]
        },
        "saslTokenProvider": {"enum": ["bearer", "aws_msk_iam"]},
        "tls": {"enum": ["enable", "disable"]},
        "unsafeSsl": _BOOL_STRING,
        "awsRegion": {"type": "string"},
    },
}
SCALED_OBJECT_SCHEMA: Doc = custom_resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string", "minLength": 1},
                    "envSourceContainerName": {"type": "string"},
                },
            },
            "pollingInterval": {**_INT32, "minimum": 1},
            "cooldownPeriod": _INT32,
            "initialCooldownPeriod": _INT32,
            "idleReplicaCount": _INT32,
            "minReplicaCount": _INT32,
            "maxReplicaCount": {**_INT32, "minimum": 1},
            "fallback": {
                "type": "object",
                "additionalProperties": False,
                "required": ["failureThreshold", "replicas"],
                "properties": {
                    "failureThreshold": {**_INT32, "minimum": 1},
                    "replicas": _INT32,
                    "behavior": {
                        "enum": [
                            "static",
                            "currentReplicas",
                            "currentReplicasIfHigher",
                            "currentReplicasIfLower",
                        ]
                    },
                },
            },
            "advanced": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "behavior": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES},
                            },
                        },
                    },
                },
            },
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "metadata"],
                    "properties": {
                        "type": {"const": "kafka"},
                        "name": {"type": "string"},
                        "metricType": {"enum": ["AverageValue", "Value"]},
                        "useCachedMetrics": {"type": "boolean"},
                        "authenticationRef": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "kind": {
                                    "enum": [
                                        "TriggerAuthentication",
                                        "ClusterTriggerAuthentication",
                                    ]
                                },
                            },
                        },
                        "metadata": KAFKA_TRIGGER_METADATA,
                    },
                },
            },
        },
    },
)


# KEDA's TriggerAuthentication, for what these manifests use: parameters from a Secret (the
# same envelope as the ScaledObject's).
TRIGGER_AUTHENTICATION_SCHEMA: Doc = {
    **SCALED_OBJECT_SCHEMA,
    "properties": {
        **SCALED_OBJECT_SCHEMA["properties"],
        "kind": {"const": "TriggerAuthentication"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretTargetRef"],
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["parameter", "name", "key"],
                        "properties": {
                            # The Kafka scaler's authentication parameters.
                            "parameter": {
                                "enum": ["sasl", "username", "password", "tls", "ca", "cert", "key"]
                            },
                            "name": {"type": "string", "minLength": 1},
                            "key": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
    },
}
KEDA_SCHEMAS = {
    "ScaledObject": SCALED_OBJECT_SCHEMA,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION_SCHEMA,
}


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_matches_its_schema(path: Path) -> None:
    doc = load_yaml(path)
    if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
        # A custom resource: a schema above, from KEDA's documentation.
        errors = schema_errors(KEDA_SCHEMAS[doc.get("kind", "ScaledObject")], doc)
        assert not errors, f"{path.name}:\n" + "\n".join(errors)
        return
    # A built-in kind: the official schema of the pinned Kubernetes version.
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top)"
        pytest.fail(f"{path.name}: {where}: {exc.message} (Kubernetes {KUBERNETES_VERSION})")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{path.name}: {exc.message}")
