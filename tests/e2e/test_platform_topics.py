"""AUTO_TOPUP_CREATE_TOPICS=false, as in deploy/k8s, where a platform team manages the topics:
`run` creates no topic. Topics missing stop it with one line naming them and exit code 5, and
stay missing; with every topic there it runs. A live `replay` says the same line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from aiokafka.admin import AIOKafkaAdminClient

from service.domain.reasons import ExitCode
from tests.cli_tools import run_cli
from tests.conftest import Infra
from tests.kafka_tools import KAFKA_REQUEST_TIMEOUT_MS, ensure_topics
from tests.service_process import START_SECONDS, TOPIC_NAMES, ServiceProcess, Topics

PLATFORM = {"AUTO_TOPUP_CREATE_TOPICS": "false", "AUTO_TOPUP_HTTP_PORT": "0"}
GONE = ("SETTINGS_UPDATED", "CREDIT_ISSUED")  # the broker lacks these two


async def _existing(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _all_but_two(infra: Infra, topics: Topics) -> list[str]:
    """Creates every topic of `topics` except GONE's; returns the names of GONE's."""
    await ensure_topics(infra.kafka, [topics[k] for k in TOPIC_NAMES if k not in GONE], 3)
    return [topics[key] for key in GONE]


async def test_run_refuses_to_start_naming_the_missing_topics(
    infra: Infra, topics: Topics, service_env: dict[str, str]
) -> None:
    missing = await _all_but_two(infra, topics)

    done = await run_cli({**service_env, **PLATFORM}, "run", timeout=START_SECONDS)

    lines = done.err.splitlines()
    assert done.code == ExitCode.TOPICS_MISSING, "\n".join(lines[-30:])  # 5, as documented
    assert "Traceback" not in done.err
    naming = [json.loads(line) for line in lines if "topics missing" in line]
    assert len(naming) == 1, "\n".join(lines)
    assert naming[0]["level"] == "critical"
    assert naming[0]["msg"].startswith(f"refusing to start: topics missing: {', '.join(missing)} ")
    assert not any("auto-topup is consuming" in line for line in lines)
    assert not set(missing) & await _existing(infra.kafka), "run created a topic all the same"


async def test_run_with_every_topic_there_creates_none_and_runs(
    infra: Infra, topics: Topics, service_env: dict[str, str]
) -> None:
    await ensure_topics(infra.kafka, topics.env().values(), 3)
    proc = ServiceProcess({**service_env, **PLATFORM})
    proc.start()  # until it consumes
    assert proc.stop() == 0, "\n".join(proc.lines[-30:])
    assert not any("created" in line and "topics" in line for line in proc.lines)


async def test_a_live_replay_creates_no_topic_either(
    infra: Infra, topics: Topics, service_env: dict[str, str]
) -> None:
    inputs = ("WALLET_BALANCE_CHANGED", "SETTINGS_UPDATED", "INVOICE_STATUS_CHANGED")
    await ensure_topics(infra.kafka, [topics[name] for name in inputs], 3)
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()

    done = await run_cli({**service_env, **PLATFORM}, "replay", "--from", since, "--yes")

    assert done.code == 1, done.err
    assert "error: topics missing: " in done.err
    assert topics["INVOICE_REQUESTED"] in done.err
    assert topics["INVOICE_REQUESTED"] not in await _existing(infra.kafka)
