"""The service and its operator commands through the local stack's SASL_SSL listener
(SCRAM-SHA-512 over TLS, `deploy/local/stack.sh env-sasl`): a top-up end to end, `dlq list`,
`replay` and `explain`; and credentials that Kafka refuses stop them at once, in one line.

The test's own producer and readers use the plaintext listener of the same broker: what goes
through SASL_SSL is the service and the commands under test."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from tests.cli_tools import CliRun, run_cli
from tests.e2e.conftest import Flow, pinned_offset, service_now
from tests.service_process import ServiceProcess

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.sh"
WRONG_PASSWORD = f"not-the-password-{uuid.uuid4().hex[:6]}"
REFUSED = "Kafka refused the SASL credentials"
# A command that Kafka refuses exits on its own; one that waited for Kafka would run on, and
# be killed (and fail the test) after this long.
REFUSED_EXIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def sasl_settings() -> dict[str, str]:
    """The SASL_SSL client settings of the local stack (same STACK_* variables as `make up`)."""
    done = subprocess.run(
        [str(STACK), "env-sasl"], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"deploy/local/stack.sh env-sasl failed: {done.stderr.strip()}")
    found = {}
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = value
    assert found["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    return found


@pytest.fixture
def clock_offset() -> float:
    return pinned_offset()


@pytest.fixture
def service_env(service_env: dict[str, str], sasl_settings: dict[str, str]) -> dict[str, str]:
    """The e2e service's environment, with Kafka reached through the SASL_SSL listener."""
    return {**service_env, **sasl_settings}


async def _cheque_top_up(flow: Flow, customer: str) -> dict[str, object]:
    now = flow.now()
    await flow.settings(
        customer, trigger="250.00", threshold="20.00", at=now - timedelta(seconds=2)
    )
    await flow.balance(customer, "19.99", at=now)
    (invoice,) = await flow.wait_out("INVOICE_REQUESTED", customer)
    return invoice


async def test_the_service_and_its_commands_work_through_sasl_ssl(
    flow: Flow,
    service: ServiceProcess,
    service_env: dict[str, str],
    clock_offset: float,
    tmp_path: Path,
) -> None:
    since = service_now(clock_offset) - timedelta(minutes=1)
    customer = f"sec-{uuid.uuid4().hex[:8]}"
    invoice = await _cheque_top_up(flow, customer)
    assert (invoice["customer_id"], invoice["amount"]) == (customer, "250.00")
    await flow.send("WALLET_BALANCE_CHANGED", b"not json", customer)
    await flow.flush(customer)
    assert [r.value for r in flow.dead(customer)] == [b"not json"]

    listed = (await run_cli(service_env, "dlq", "list", "--json")).ok()
    keys = {(d["key"], d["value"]) for d in listed.json_lines()}
    assert (customer, "not json") in keys

    report = tmp_path / "replay.json"
    args = ("--from", since.isoformat(), "--dry-run", "--report", str(report))
    (await run_cli(service_env, "replay", *args)).ok()
    assert customer in report.read_text()

    explained = (await run_cli(service_env, "explain", customer, "--json")).ok()
    assert json.loads(explained.out)["customer_id"] == customer

    secret = service_env["KAFKA_SASL_PASSWORD"]
    assert not [line for line in service.lines if secret in line]


def _refused_once(run: CliRun) -> str:
    lines = [line for line in run.err.splitlines() if REFUSED in line]
    assert len(lines) == 1, run.err
    assert "waiting for Kafka" not in run.err
    assert WRONG_PASSWORD not in run.out + run.err
    return lines[0]


async def test_a_wrong_password_stops_run_at_once_with_one_line(
    service_env: dict[str, str],
) -> None:
    env = {**service_env, "KAFKA_SASL_PASSWORD": WRONG_PASSWORD, "AUTO_TOPUP_HTTP_PORT": "0"}
    run = await run_cli(env, "run", timeout=REFUSED_EXIT_SECONDS)
    assert run.code == 2, run.err
    line = json.loads(_refused_once(run))
    assert line["level"] == "critical"
    assert line["msg"].startswith(f"refusing to start: {REFUSED}")


async def test_a_wrong_password_stops_the_operator_commands_with_one_line(
    service_env: dict[str, str], clock_offset: float
) -> None:
    env = {**service_env, "KAFKA_SASL_PASSWORD": WRONG_PASSWORD}
    since = (service_now(clock_offset) - timedelta(minutes=5)).isoformat()
    listed = await run_cli(env, "dlq", "list", timeout=REFUSED_EXIT_SECONDS)
    assert listed.code == 1
    assert _refused_once(listed).startswith(f"error: {REFUSED}")
    replayed = await run_cli(
        env, "replay", "--from", since, "--dry-run", timeout=REFUSED_EXIT_SECONDS
    )
    assert replayed.code == 1
    assert _refused_once(replayed).startswith(f"error: {REFUSED}")
