"""The service says which version it runs in its start-up line."""

from __future__ import annotations

import json

import service as package
from tests.service_process import ServiceProcess


def test_the_start_up_line_names_the_version(service: ServiceProcess) -> None:
    line = service.wait_for_log("auto-topup is consuming")
    assert json.loads(line)["msg"].endswith(f"(version {package.__version__})")
