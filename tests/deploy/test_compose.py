"""docker-compose.yml runs the service against its stack with real settings."""

from __future__ import annotations

import re

from tests.deploy.files import COMPOSE, Doc, assert_settings, load_yaml, setting_default

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
