from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import Infra
from tests.service_process import ServiceProcess, Topics


@pytest.fixture
def topics() -> Topics:
    return Topics()


@pytest.fixture
def service_env(infra: Infra, database_url: str, topics: Topics) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": "sk_test_e2e_fake_key",
        "AUTO_TOPUP_CONSUMER_GROUP": f"auto-topup-e2e-{uuid.uuid4().hex[:8]}",
        "AUTO_TOPUP_TOPIC_PARTITIONS": "3",
        "AUTO_TOPUP_LOG_LEVEL": "INFO",
        **topics.env(),
    }
    if infra.stripe_api_base:
        env["STRIPE_API_BASE"] = infra.stripe_api_base
    return env


@pytest.fixture
def service(service_env: dict[str, str]) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env)
    proc.start()
    yield proc
    if proc.running:
        assert proc.stop() == 0, "\n".join(proc.lines[-30:])
