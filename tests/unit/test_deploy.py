"""The deployment files in deploy/: valid, and consistent with the service they deploy.

- Every Kubernetes manifest in deploy/k8s validates, strictly (unknown fields rejected), against
  the official JSON schemas of one pinned Kubernetes version (bundled by kubernetes-validate, so
  no network is needed); the KEDA ScaledObject, a custom resource, against a schema written here
  from KEDA's documentation.
- The manifests agree with each other and with service/config.py: every environment variable
  they set is a real setting, the probes hit the service's endpoints, the grace period covers
  the worst-case shutdown, secrets come only from the Secret.
- The Dockerfile, docker-compose.yml and the Prometheus alerting rules are checked likewise.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
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

KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests must be valid for
APP = "auto-topup"  # name of every object, and of the Secret that is not in git
SECRET_SETTINGS = frozenset({"DATABASE_URL", "STRIPE_API_KEY"})
UID = 10001

# Metrics every one of which some alert must watch (the others are for dashboards).
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


def assert_settings(names: set[str], where: str) -> None:
    unknown = names - setting_names()
    assert not unknown, f"{where} sets {sorted(unknown)}, which service/config.py does not read"


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
    }


# From KEDA's ScaledObject specification and its Apache Kafka scaler page (keda.sh/docs), for
# the fields these manifests may use; anything else is rejected. Trigger metadata values are
# strings (the CRD's metadata is a map of strings).
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
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
SCALED_OBJECT_SCHEMA: Doc = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
        },
        "spec": {
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
    },
}


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_matches_its_schema(path: Path) -> None:
    doc = load_yaml(path)
    if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
        # A custom resource: the schema below, from KEDA's documentation.
        jsonschema.Draft202012Validator.check_schema(SCALED_OBJECT_SCHEMA)
        validator = jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA)
        errors = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
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


# ---------------------------------------------------------------- Kubernetes: consistency


def test_scaled_object_scales_the_deployment_by_the_services_lag() -> None:
    spec = manifests()["ScaledObject"]["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] == manifests()["Deployment"]["metadata"]["name"]

    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == setting("AUTO_TOPUP_CONSUMER_GROUP")
    assert meta["topic"] == setting("AUTO_TOPUP_TOPIC_WALLET_BALANCE_CHANGED")
    assert meta["bootstrapServers"] == setting("KAFKA_BOOTSTRAP_SERVERS")
    assert meta["lagThreshold"] == "1000"
    # The service starts a new consumer group at the earliest offset; so must KEDA's lag.
    assert meta.get("offsetResetPolicy") == "earliest"

    partitions = int(setting("AUTO_TOPUP_TOPIC_PARTITIONS"))
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions, (
        "more instances than partitions would sit idle"
    )


def test_probes_hit_the_services_endpoints_on_the_named_port() -> None:
    container = main_container()
    port = int(setting("AUTO_TOPUP_HTTP_PORT"))
    assert setting("AUTO_TOPUP_HTTP_HOST") == "0.0.0.0", "the kubelet probes the pod's IP"
    assert {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]

    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "http"), probe
    assert (
        container["startupProbe"]["failureThreshold"]
        * container["startupProbe"].get("periodSeconds", 10)
        >= 60
    ), "start-up waits for PostgreSQL and Kafka: give it a minute at least"

    service = manifests()["Service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"} in service[
        "spec"
    ]["ports"]
    notes = service["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(port)
    assert notes["prometheus.io/path"] == "/metrics"


def test_grace_period_covers_the_worst_case_shutdown() -> None:
    timeout = float(setting("AUTO_TOPUP_SHUTDOWN_TIMEOUT_SECONDS"))
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > 2 * timeout + 15, (
        f"SIGKILL after {grace}s, shutdown may take {2 * timeout + 15}s"
    )


def test_labels_select_the_pods() -> None:
    deployment = manifests()["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "PodDisruptionBudget": manifests()["PodDisruptionBudget"]["spec"]["selector"][
            "matchLabels"
        ],
        "Service": manifests()["Service"]["spec"]["selector"],
    }
    for kind, selector in selectors.items():
        assert selector, kind
        assert selector.items() <= pod_labels.items(), f"the {kind} selects no pod"
    assert manifests()["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    assert manifests()["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert deployment["spec"]["replicas"] == 2


def test_secrets_come_only_from_the_secret() -> None:
    assert "Secret" not in manifests(), "the Secret is created by hand, never committed"
    assert not SECRET_SETTINGS & config_data().keys(), "a secret in the ConfigMap"
    for container in all_containers():
        env = {e["name"]: e for e in container.get("env", [])}
        for name in SECRET_SETTINGS:
            assert name in env, f"{container['name']} needs {name}"
            assert "value" not in env[name], f"{container['name']}: {name} written in clear"
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (APP, name), f"{container['name']}: {name}"
        for name, entry in env.items():
            if "value" not in entry:
                assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name}: only secretKeyRef"

    # Nor anything that looks like one, in any file (comments included).
    looks_secret = re.compile(
        r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{6,}"  # a Stripe key
        r"|\bwhsec_[A-Za-z0-9]{6,}"  # a Stripe webhook secret
        r"|[a-z][a-z0-9+.-]*://[^\s:/@\"']+:[^\s/@\"'$]+@"  # a URL with a password
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    )
    for path in sorted(K8S.glob("*.yaml")):
        found = looks_secret.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.name}: {found}"


def test_every_variable_the_pods_get_is_a_setting() -> None:
    assert_settings(set(config_data()), "configmap.yaml")
    configmap = manifests()["ConfigMap"]["metadata"]["name"]
    for container in all_containers():
        for source in container.get("envFrom", []):
            assert source == {"configMapRef": {"name": configmap}}, container["name"]
        names = {e["name"] for e in container.get("env", [])}
        assert_settings(names, f"deployment.yaml ({container['name']})")


def test_pods_run_unprivileged_and_bounded() -> None:
    spec = pod_spec()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == UID
    for container in all_containers():
        name = container["name"]
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == UID, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert not context["capabilities"].get("add"), name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"].get(bound, {}).keys(), (
                f"{name} {bound}"
            )
        assert container["image"] == main_container()["image"], f"{name}: another image"


def test_an_init_container_applies_the_migrations() -> None:
    (init,) = pod_spec()["initContainers"]
    assert init.get("command", []) + init.get("args", []) == ["migrate"]
    assert main_container().get("args") == ["run"]
    assert "command" not in main_container(), "the image's ENTRYPOINT is auto-topup"


# ---------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (line continuations joined), one list per stage."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            stages.append([])
        assert stages, "an instruction before the first FROM"
        stages[-1].append((keyword, rest))
    return stages


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, sep, value = item.partition("=")
                assert sep, f"ENV {rest}: use the NAME=value form"
                env[name] = value
    return env


def test_dockerfile() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    names: set[str] = set()
    for stage in stages:
        words = stage[0][1].split()
        image = words[0]
        if image not in names:
            assert re.fullmatch(r"python:3\.11-slim(@sha256:[0-9a-f]{64})?", image), image
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])

    final = stages[-1]
    assert any(k == "COPY" and r.startswith("--from=") for k, r in final), "copies the venv"
    builder = [r for stage in stages[:-1] for k, r in stage if k == "RUN"]
    # the project itself (with optional runtime extras), never the test extras
    installs = [r for r in builder if re.search(r"pip install\s+\"?\.(\[[a-z,]+\])?\"?(\s|$)", r)]
    assert installs, "pip install ."
    assert not any("test" in r for r in installs), "no test extras in the image"
    assert not any("[test]" in r for stage in stages for _, r in stage), "no test extras"

    users = [r for k, r in final if k == "USER"]
    assert users, "the final stage names its USER"
    user = users[-1].split(":")[0]
    assert user.isdigit(), "a numeric USER, so that runAsNonRoot can verify it"
    assert int(user) == UID

    healthchecks = [r for k, r in final if k == "HEALTHCHECK"]
    assert len(healthchecks) == 1, "the final stage has one HEALTHCHECK"
    healthcheck = healthchecks[0]
    assert healthcheck.split()[0] != "NONE"
    assert "CMD" in healthcheck.split(), "HEALTHCHECK [OPTIONS] CMD ..."
    assert "urllib" in healthcheck, "the slim image has no curl"
    assert "/healthz" in healthcheck
    (entrypoint,) = [r for k, r in final if k == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["auto-topup"]
    (cmd,) = [r for k, r in final if k == "CMD"]
    assert json.loads(cmd) == ["run"]

    env = dockerfile_env(final)
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("AUTO_TOPUP_HTTP_HOST") == "0.0.0.0"
    exposed = {p.split("/")[0] for k, r in final if k == "EXPOSE" for p in r.split()}
    assert env.get("AUTO_TOPUP_HTTP_PORT") in exposed
    service_vars = {
        n for n in env if n.startswith(("AUTO_TOPUP_", "KAFKA_", "DATABASE_", "STRIPE_"))
    }
    assert_settings(service_vars, "the Dockerfile")
    assert not service_vars & SECRET_SETTINGS, "no secret baked into the image"


# ---------------------------------------------------------------- docker-compose


def compose_env(service: Doc) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_docker_compose() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"kafka", "postgres", "localstripe", "auto-topup"} <= services.keys()
    app = services["auto-topup"]
    env = compose_env(app)
    assert_settings(set(env), "docker-compose.yml (auto-topup)")

    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    for dependency in ("kafka", "postgres"):
        assert app["depends_on"][dependency]["condition"] == "service_healthy", dependency
    assert "127.0.0.1:8080:8080" in app["ports"]
    grace = re.fullmatch(r"(\d+)s", str(app.get("stop_grace_period", "10s")))
    assert grace, "stop_grace_period: write it in seconds (60s)"
    shutdown = 2 * float(setting_default("AUTO_TOPUP_SHUTDOWN_TIMEOUT_SECONDS")) + 15
    assert int(grace.group(1)) > shutdown, f"SIGKILL before the {shutdown}s shutdown ends"

    # Kafka: host clients keep 127.0.0.1:9092, containers get an in-network listener.
    kafka = compose_env(services["kafka"])
    advertised = {
        name: address
        for name, _, address in (
            item.partition("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
        )
    }
    assert advertised.get("PLAINTEXT") == "127.0.0.1:9092"
    assert "127.0.0.1:9092:9092" in services["kafka"]["ports"]
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap in advertised.values(), f"{bootstrap} is not advertised"
    assert bootstrap.startswith("kafka:"), f"{bootstrap}: not the in-network address"
    protocols = dict(
        item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    listeners = [i.partition("://")[0] for i in kafka["KAFKA_LISTENERS"].split(",")]
    assert set(advertised) <= set(listeners) <= protocols.keys()

    assert env["DATABASE_URL"].startswith("postgresql://postgres@postgres:5432/")
    assert env["STRIPE_API_BASE"] == "http://localstripe:8420"
    assert re.fullmatch(r"\$\{STRIPE_API_KEY:-sk_test_[a-z_]+\}", env["STRIPE_API_KEY"]), (
        "only a fake test key, for localstripe"
    )
    assert "8420" in " ".join(map(str, services["localstripe"]["command"]))


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
