"""The Kubernetes manifests agree with each other and with service/config.py: every
environment variable they set is a real setting, the probes hit the service's endpoints, the
grace period covers the worst-case shutdown, secrets come only from the Secret."""

from __future__ import annotations

import re

from tests.deploy.files import (
    APP,
    K8S,
    KAFKA_SECRET,
    MIGRATE_SECRET,
    SECRET_SETTINGS,
    UID,
    Doc,
    all_containers,
    assert_settings,
    config_data,
    main_container,
    manifests,
    pod_spec,
    setting,
    setting_default,
)

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


# The secrets each container gets, and the Secret each comes from: the service's role and the
# Stripe key for `run`; the schema owner's role for `migrate`; the Kafka credentials for both
# (each checks every setting at start-up).
KAFKA_CREDENTIALS = {"KAFKA_SASL_USERNAME": KAFKA_SECRET, "KAFKA_SASL_PASSWORD": KAFKA_SECRET}
SECRETS_OF = {
    "auto-topup": {"DATABASE_URL": APP, "STRIPE_API_KEY": APP, **KAFKA_CREDENTIALS},
    "migrate": {"DATABASE_URL": MIGRATE_SECRET, **KAFKA_CREDENTIALS},
}


def test_secrets_come_only_from_the_secrets() -> None:
    assert "Secret" not in manifests(), "the Secrets are created by hand, never committed"
    assert not SECRET_SETTINGS & config_data().keys(), "a secret in the ConfigMap"
    assert {c["name"] for c in all_containers()} == SECRETS_OF.keys()
    for container in all_containers():
        env = {e["name"]: e for e in container.get("env", [])}
        expected = SECRETS_OF[container["name"]]
        assert SECRET_SETTINGS & env.keys() == expected.keys(), container["name"]
        for name, secret in expected.items():
            assert "value" not in env[name], f"{container['name']}: {name} written in clear"
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (secret, name), f"{container['name']}: {name}"
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


def test_only_the_init_container_migrates() -> None:
    # `run` only checks the schema, so that the service's role needs no right to change it.
    assert setting("AUTO_TOPUP_MIGRATE_ON_START") == "false"
    assert setting_default("AUTO_TOPUP_MIGRATE_ON_START") is True, "locally, run migrates"
    (init,) = pod_spec()["initContainers"]
    assert "STRIPE_API_KEY" not in {e["name"] for e in init.get("env", [])}


def _mounted_file(container: Doc, path: str) -> tuple[str, str] | None:
    """The (Secret, key) a container reads at `path` through a secret volume, or None."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    for mount in container.get("volumeMounts", []):
        folder = mount["mountPath"].rstrip("/") + "/"
        secret = volumes[mount["name"]].get("secret")
        if secret is None or not path.startswith(folder):
            continue
        assert mount.get("readOnly") is True, f"{container['name']}: {mount['name']} writable"
        for item in secret.get("items", []):
            if folder + item["path"] == path:
                return secret["secretName"], item["key"]
    return None


def test_kafka_security_is_the_same_for_the_pods_and_for_keda() -> None:
    protocol = setting("KAFKA_SECURITY_PROTOCOL")
    mechanism = setting("KAFKA_SASL_MECHANISM")
    cafile = setting("KAFKA_SSL_CAFILE")
    assert protocol == "SASL_SSL"
    (trigger,) = manifests()["ScaledObject"]["spec"]["triggers"]
    meta = trigger["metadata"]
    keda_sasl = {
        "PLAIN": "plaintext",
        "SCRAM-SHA-256": "scram_sha256",
        "SCRAM-SHA-512": "scram_sha512",
    }
    assert meta["sasl"] == keda_sasl[mechanism]
    assert meta["tls"] == "enable"

    auth = manifests()["TriggerAuthentication"]
    assert trigger["authenticationRef"] == {
        "name": auth["metadata"]["name"],
        "kind": "TriggerAuthentication",
    }
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"] == (KAFKA_SECRET, "KAFKA_SASL_USERNAME")
    assert refs["password"] == (KAFKA_SECRET, "KAFKA_SASL_PASSWORD")
    # Every container checks the settings at start-up, KAFKA_SSL_CAFILE (a readable file) too.
    for container in all_containers():
        assert _mounted_file(container, cafile) == refs["ca"], (
            f"{container['name']}: {cafile} is not the CA that KEDA uses"
        )
