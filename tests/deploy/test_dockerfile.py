"""The Dockerfile builds the service as the manifests expect it."""

from __future__ import annotations

import json
import re
import shlex

from tests.deploy.files import DOCKERFILE, SECRET_SETTINGS, UID, assert_settings

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
