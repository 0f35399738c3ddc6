"""The build is reproducible: locked dependencies with hashes that agree with pyproject.toml,
upper bounds on every 0.x dependency, and a base image pinned by digest, with OCI labels."""

from __future__ import annotations

import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.files import ROOT
from tests.deploy.test_dockerfile import dockerfile_stages

LOCK = ROOT / "requirements" / "lock.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")


@cache
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def requirements(*groups: str) -> list[Requirement]:
    project = pyproject()["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        found += [Requirement(r) for r in project["optional-dependencies"][group]]
    return found


@cache
def locked(path: Path) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of a lock written by `make lock`."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash=sha256:"):
            assert name, f"{path.name}: a hash before any requirement"
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
            continue
        spec = line.removesuffix("\\").split(";")[0].strip()
        assert "==" in spec, f"{path.name}: {spec} is not pinned with =="
        pinned, _, exact = spec.partition("==")
        name = canonicalize_name(pinned)
        pins[name] = (Version(exact), 0)
    return pins


def test_every_locked_package_is_pinned_with_hashes() -> None:
    for path in (LOCK, RUNTIME_LOCK):
        pins = locked(path)
        assert pins, f"{path.name} is empty"
        assert [n for n, (_, hashes) in pins.items() if hashes == 0] == [], path.name


def test_the_runtime_lock_is_the_full_lock_less_the_test_tools() -> None:
    full = locked(LOCK)
    for name, (version, _) in locked(RUNTIME_LOCK).items():
        assert name in full, f"{name} is in runtime.lock only"
        assert full[name][0] == version, f"{name}: {version} in runtime.lock, {full[name][0]}"


def test_the_locks_satisfy_pyproject() -> None:
    for path, groups in ((RUNTIME_LOCK, ("tracing",)), (LOCK, ("test", "tracing"))):
        pins = locked(path)
        for requirement in requirements(*groups):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement} is missing from {path.name}: run `make lock`"
            version = pins[name][0]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{path.name} pins {name}=={version}, outside {requirement}: run `make lock`"
            )


def test_every_0x_runtime_dependency_has_an_upper_bound() -> None:
    pins = locked(RUNTIME_LOCK)
    for requirement in requirements("tracing"):
        version = pins[canonicalize_name(requirement.name)][0]
        if version.major == 0:
            assert any(s.operator in ("<", "~=", "==") for s in requirement.specifier), (
                f"{requirement}: a 0.x dependency needs an upper bound (below its next minor)"
            )


def labels(stage: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "LABEL":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                found[name] = value
    return found


def test_the_image_is_pinned_and_labelled() -> None:
    stages = dockerfile_stages()
    digests = set()
    for stage in stages:
        image = stage[0][1].split()[0]
        pinned = DIGEST.search(image)
        assert pinned, f"FROM {image}: pin the base image by digest"
        digests.add(pinned.group(1))
    final = labels(stages[-1])
    assert final["org.opencontainers.image.title"] == "auto-topup"
    assert final["org.opencontainers.image.base.digest"] in digests
    version = final["org.opencontainers.image.version"]
    if version.startswith("${"):  # the build argument's default
        (default,) = [
            r.partition("=")[2] for k, r in stages[-1] if k == "ARG" and r.startswith("VERSION=")
        ]
        version = default
    assert version == pyproject()["project"]["version"]


def test_the_image_installs_the_runtime_lock_with_hashes() -> None:
    runs = [r for stage in dockerfile_stages()[:-1] for k, r in stage if k == "RUN"]
    assert any("--require-hashes" in r and "-r requirements/runtime.lock" in r for r in runs), (
        "the builder installs requirements/runtime.lock with --require-hashes"
    )
    project = [r for r in runs if re.search(r"pip install\s+\"?\.", r)]
    assert project, "pip install . in the builder"
    assert all("--no-deps" in r for r in project), "the project adds no dependency of its own"
