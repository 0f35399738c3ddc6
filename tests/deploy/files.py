"""The deployment files in deploy/ as the tests read them, and the settings of
service/config.py they must name."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_OPERATOR = K8S / "components" / "prometheus-operator"
PROMETHEUS_RULE = PROMETHEUS_OPERATOR / "prometheusrule.yaml"
SERVICE_MONITOR = PROMETHEUS_OPERATOR / "servicemonitor.yaml"
DASHBOARD = DEPLOY / "grafana" / "auto-topup.json"
RUNBOOK = ROOT / "docs" / "runbook.md"

KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests must be valid for
APP = "auto-topup"  # name of every object, and of the Secret that is not in git
MIGRATE_SECRET = "auto-topup-migrate"  # the schema owner's DATABASE_URL, for `migrate` only
KAFKA_SECRET = "auto-topup-kafka"  # the Kafka credentials and CA, read by the pods and by KEDA
# The settings that are secrets (each from a Secret that is not in git).
SECRET_SETTINGS = frozenset(
    {"DATABASE_URL", "STRIPE_API_KEY", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
)
UID = 10001

Doc = dict[str, Any]

# ---------------------------------------------------------------- loading


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def manifests() -> dict[str, Doc]:
    """kind -> the one object of each manifest file (one concept per file)."""
    by_kind: dict[str, Doc] = {}
    for path in manifest_files():
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        assert len(docs) == 1, f"{path.name}: expected one object, found {len(docs)}"
        doc = docs[0]
        assert isinstance(doc, dict), path.name
        kind = doc.get("kind")
        assert isinstance(kind, str), f"{path.name}: no kind"
        assert kind not in by_kind, f"{path.name}: a second {kind}"
        by_kind[kind] = doc
    return by_kind


def config_data() -> dict[str, str]:
    data = manifests()["ConfigMap"]["data"]
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


def pod_spec() -> Doc:
    spec: Doc = manifests()["Deployment"]["spec"]["template"]["spec"]
    return spec


def main_container() -> Doc:
    containers = pod_spec()["containers"]
    assert len(containers) == 1, "one container per pod"
    container: Doc = containers[0]
    return container


def all_containers() -> list[Doc]:
    spec = pod_spec()
    return [*spec.get("initContainers", []), *spec["containers"]]


def aliases(field: FieldInfo) -> set[str]:
    """The environment variables one field of Settings is read from."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return {alias}
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str)}
    return set()


def setting_default(name: str) -> Any:
    for field in Settings.model_fields.values():
        if name in aliases(field):
            return field.default
    raise AssertionError(f"service/config.py has no setting {name}")


def setting(alias: str) -> str:
    """The value the pods get for a setting: the ConfigMap's, else the service's default."""
    data = config_data()
    return data[alias] if alias in data else str(setting_default(alias))


@cache
def setting_names() -> frozenset[str]:
    """Every environment variable service.config.Settings reads."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        names |= aliases(field)
    assert {"KAFKA_BOOTSTRAP_SERVERS", *SECRET_SETTINGS} <= names, "aliases not found"
    return frozenset(names)


# ---------------------------------------------------------------- custom resources' schemas

STRING_MAP: Doc = {"type": "object", "additionalProperties": {"type": "string"}}
# The metadata a custom resource of these manifests may have.
CR_METADATA: Doc = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}


def custom_resource(api_version: str, kind: str, spec: Doc, metadata: Doc = CR_METADATA) -> Doc:
    """The JSON Schema of one custom resource: these fields and no other."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
        },
    }


def schema_errors(schema: Doc, doc: Any) -> list[str]:
    """One line per place where `doc` breaks `schema` (a JSON Schema 2020-12, checked first)."""
    jsonschema.Draft202012Validator.check_schema(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)
    ]


def assert_settings(names: set[str], where: str) -> None:
    unknown = names - setting_names()
    assert not unknown, f"{where} sets {sorted(unknown)}, which service/config.py does not read"
