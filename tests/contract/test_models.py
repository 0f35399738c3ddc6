"""make contract-models, as a test: the AsyncAPI document validates with the AsyncAPI CLI, and
Modelina's Java and Go models of it compile, are well named and cover every message.

It needs node (with npm), javac and go; a machine without one fails here, naming it (never a
skip). The npm install is cached in .cache/node, keyed by tools/contract/package-lock.json.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "contract" / "models.sh"
NEEDED = ("node", "npm", "javac", "go")
# Go is also looked for where its Debian-less tarball installs it (as the stack script does).
SEARCH_PATH = os.pathsep.join((os.environ.get("PATH", ""), "/usr/local/go/bin"))
# A first run installs the pinned CLI and Modelina with npm (about 2 minutes on 2 cores); a
# later one validates, generates and compiles (about 15 seconds).
CONTRACT_MODELS_SECONDS = 600


def test_the_tools_are_there() -> None:
    missing = [tool for tool in NEEDED if shutil.which(tool, path=SEARCH_PATH) is None]
    if missing:
        pytest.fail(
            f"make contract-models needs {', '.join(missing)} (Node with npm, a JDK, Go; "
            "see the README's quick start)"
        )


def test_models_generated_from_the_document_compile(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT)],
        cwd=ROOT,
        env={**os.environ, "PATH": SEARCH_PATH, "CONTRACT_MODELS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=CONTRACT_MODELS_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout
    made = set((tmp_path / "models.txt").read_text().split("\n"))
    document = json.loads((ROOT / "schemas" / "asyncapi.json").read_text())
    for name, message in document["components"]["messages"].items():
        headers = message["headers"]["$ref"].rsplit("/", 1)[1]
        for language in ("java", "go"):
            assert f"{language} {headers}" in made, (language, name)
            if name != "DeadLetter":  # its value is the original bytes: no class to make
                assert f"{language} {name}" in made, (language, name)
    assert not [line for line in made if "minus" in line.lower()]
    assert list((tmp_path / "classes").rglob("CreditIssued.class"))
