"""Start-up's topic step (service/adapters/startup.py prepare_topics) on a fake broker: with
AUTO_TOPUP_CREATE_TOPICS true it creates what is missing, with false it creates nothing and
names every missing topic; the co-partition check runs either way. Also the configs of the
topics the service creates, and the exit code of each refusal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from service.adapters.kafka.producer import TOPIC_MAX_MESSAGE_BYTES, topic_configs
from service.adapters.kafka.topics import NotCoPartitioned, TopicsMissing
from service.adapters.startup import TopicAdmin, prepare_topics, refusal_code
from service.config import Settings
from service.domain.reasons import ExitCode


@dataclass
class FakeBroker:
    """The topics a broker has (name -> partitions) and what start-up asked of it."""

    topics: dict[str, int]
    partitions: int = 6
    created: list[str] = field(default_factory=list)
    checked: list[tuple[str, ...]] = field(default_factory=list)

    async def create(self, names: Sequence[str], co_partitioned: Sequence[str]) -> list[str]:
        new = [n for n in names if n not in self.topics]
        for name in new:
            self.topics[name] = self.partitions
        self.created += new
        return new

    async def missing(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n not in self.topics]

    async def check_co_partitioned(self, names: Sequence[str]) -> None:
        self.checked.append(tuple(names))
        counts = {n: self.topics[n] for n in names}
        if len(set(counts.values())) > 1:
            raise NotCoPartitioned(counts)


def _settings(create: bool, **env: str) -> Settings:
    values = {"AUTO_TOPUP_CREATE_TOPICS": str(create).lower(), **env}
    return Settings.model_validate(values)


def _admin(broker: FakeBroker) -> TopicAdmin:
    return broker  # FakeBroker is a TopicAdmin (mypy checks it here)


def _all_but(settings: Settings, *gone: str) -> dict[str, int]:
    return {name: 6 for name in settings.topics.all if name not in gone}


async def test_the_default_creates_what_is_missing_and_checks_the_inputs() -> None:
    settings = Settings()
    assert settings.create_topics is True  # the local stack and the tests are unchanged
    broker = FakeBroker(_all_but(settings, "credit-issued", "auto-topup-dead-letter"))
    await prepare_topics(settings, _admin(broker))
    assert broker.created == ["credit-issued", "auto-topup-dead-letter"]
    assert broker.checked == [settings.topics.inputs]


async def test_with_creation_off_nothing_is_created_and_every_missing_topic_is_named() -> None:
    settings = _settings(False, AUTO_TOPUP_TOPIC_TOP_UP_FAILED="payments.top-up-failed")
    broker = FakeBroker(_all_but(settings, "settings-updated", "payments.top-up-failed"))
    with pytest.raises(TopicsMissing) as raised:
        await prepare_topics(settings, _admin(broker))
    assert broker.created == []
    assert raised.value.missing == ["settings-updated", "payments.top-up-failed"]
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith("topics missing: settings-updated, payments.top-up-failed ")
    assert "AUTO_TOPUP_CREATE_TOPICS=false" in line
    assert refusal_code(raised.value) is ExitCode.TOPICS_MISSING
    assert int(ExitCode.TOPICS_MISSING) == 5  # as docs/operating.md says


async def test_with_creation_off_and_every_topic_there_it_only_checks() -> None:
    settings = _settings(False)
    broker = FakeBroker(_all_but(settings))
    await prepare_topics(settings, _admin(broker))
    assert broker.created == []
    assert broker.checked == [settings.topics.inputs]


@pytest.mark.parametrize("create", [True, False])
async def test_the_co_partition_check_stays_either_way(create: bool) -> None:
    settings = _settings(create)
    broker = FakeBroker({**_all_but(settings), settings.topics.settings_updated: 3})
    with pytest.raises(NotCoPartitioned) as raised:
        await prepare_topics(settings, _admin(broker))
    assert broker.created == []
    assert refusal_code(raised.value) == ExitCode.NOT_CO_PARTITIONED


def test_topics_the_service_creates_get_min_insync_replicas() -> None:
    settings = _settings(
        True, AUTO_TOPUP_TOPIC_REPLICATION_FACTOR="3", AUTO_TOPUP_TOPIC_MIN_INSYNC_REPLICAS="2"
    )
    configs = topic_configs(settings)
    assert set(configs) == set(settings.topics.all)
    assert {c["min.insync.replicas"] for c in configs.values()} == {"2"}
    dead = configs[settings.topics.dead_letter]
    assert dead["max.message.bytes"] == str(TOPIC_MAX_MESSAGE_BYTES)
    assert "max.message.bytes" not in configs[settings.topics.invoice_requested]


def test_local_defaults_are_one_replica() -> None:
    settings = Settings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (1, 1)
    assert {c["min.insync.replicas"] for c in topic_configs(settings).values()} == {"1"}
