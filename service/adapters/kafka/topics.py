"""Creates the service's topics when they are missing, or (when it may create none) finds those
that are missing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from service.adapters.kafka.security import KafkaAccess

log = logging.getLogger(__name__)


def _admin(kafka: KafkaAccess) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="auto-topup-admin")


async def partitions_of(kafka: KafkaAccess, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the named topics; a missing topic is an error."""
    admin = _admin(kafka)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    found: list[TopicPartition] = []
    for topic in described:
        if topic["error_code"] != 0 or not topic["partitions"]:
            raise LookupError(f"topic {topic['topic']} does not exist")
        found += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
    return found


class NotCoPartitioned(Exception):
    """Topics that must have the same number of partitions do not."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        found = ", ".join(f"{name} has {n}" for name, n in counts.items())
        super().__init__(
            "the input topics must have the same number of partitions (co-partitioned by "
            f"customer_id): {found}"
        )


class TopicsMissing(Exception):
    """Topics the service reads or writes do not exist, and it may not create them."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"topics missing: {', '.join(self.missing)} (AUTO_TOPUP_CREATE_TOPICS=false: the "
            'service creates none; create them as docs/operating.md "Topics" says)'
        )


async def missing_topics(kafka: KafkaAccess, names: Iterable[str]) -> list[str]:
    """Those of the named topics the broker does not have, in the order given."""
    admin = _admin(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [n for n in dict.fromkeys(names) if n not in existing]


@dataclass(frozen=True)
class KafkaTopicAdmin:
    """The topic steps of start-up on a broker (service/adapters/startup.py prepare_topics)."""

    kafka: KafkaAccess
    partitions: int
    replication_factor: int
    configs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    async def create(self, names: Sequence[str], co_partitioned: Sequence[str]) -> list[str]:
        return await ensure_topics(
            self.kafka,
            names,
            self.partitions,
            self.replication_factor,
            co_partitioned=co_partitioned,
            topic_configs=self.configs,
        )

    async def missing(self, names: Sequence[str]) -> list[str]:
        return await missing_topics(self.kafka, names)

    async def check_co_partitioned(self, names: Sequence[str]) -> None:
        await check_co_partitioned(self.kafka, names)


async def partition_counts(kafka: KafkaAccess, names: Iterable[str]) -> dict[str, int]:
    """How many partitions each named topic has. A topic that the broker does not know (yet:
    it may just have been created) raises UnknownTopicOrPartitionError, a KafkaError."""
    admin = _admin(kafka)
    await admin.start()
    try:
        described = await admin.describe_topics(list(dict.fromkeys(names)))
    finally:
        await admin.close()
    counts: dict[str, int] = {}
    for topic in described:
        if topic["error_code"] != 0 or not topic["partitions"]:
            raise UnknownTopicOrPartitionError(f"topic {topic['topic']} has no partitions yet")
        counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def check_co_partitioned(kafka: KafkaAccess, names: Sequence[str]) -> dict[str, int]:
    """The partition count of each named topic; NotCoPartitioned when they differ."""
    counts = await partition_counts(kafka, names)
    if len(set(counts.values())) > 1:
        raise NotCoPartitioned({n: counts[n] for n in dict.fromkeys(names)})
    return counts


async def ensure_topics(
    kafka: KafkaAccess,
    names: Iterable[str],
    partitions: int,
    replication_factor: int,
    co_partitioned: Sequence[str] = (),
    topic_configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Creates each missing topic; returns the names it created. A missing topic of
    `co_partitioned` gets the partition count of one of them that exists, if any.
    `topic_configs`: per topic name, the configs a topic created here is given."""
    admin = _admin(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return []
        counts = {n: partitions for n in missing}
        present = [n for n in co_partitioned if n in existing]
        if present and any(n in co_partitioned for n in missing):
            (first,) = await admin.describe_topics(present[:1])
            if first["error_code"] == 0 and first["partitions"]:
                for n in missing:
                    if n in co_partitioned:
                        counts[n] = len(first["partitions"])
        created: list[str] = []
        with contextlib.suppress(TopicAlreadyExistsError):  # another instance was first
            response = await admin.create_topics(
                [_new_topic(n, counts[n], replication_factor, topic_configs) for n in missing]
            )
            # per topic (name, error code, ...): 0 created; 36 it exists (the topic list lags)
            created = [str(e[0]) for e in response.topic_errors if e[1] == 0]
            for error in response.topic_errors:
                if error[1] not in (0, TopicAlreadyExistsError.errno):
                    log.warning("could not create topic %s: %s", error[0], error[1:])
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    finally:
        await admin.close()


def _new_topic(
    name: str,
    partitions: int,
    replication_factor: int,
    topic_configs: Mapping[str, Mapping[str, str]] | None,
) -> NewTopic:
    configs = dict((topic_configs or {}).get(name, {}))
    return NewTopic(name, partitions, replication_factor, topic_configs=configs or None)


# Answers to CreateTopics that no retry changes: invalid name, not authorized (topic or
# cluster), invalid partitions / replication factor / assignment / config, invalid request,
# a policy that forbids it.
_CANNOT_CREATE = frozenset({17, 29, 31, 37, 38, 39, 40, 42, 44})


async def restore_topics(
    kafka: KafkaAccess,
    names: Iterable[str],
    partitions: int,
    replication_factor: int,
    *,
    create: bool = True,
    topic_configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """For the outbox relay, when sends to some topics fail as if they were gone (an output
    topic deleted while the service runs): creates those of `names` that are missing (only
    with `create`), and returns those that are missing and cannot be created (for good; a
    failure that may go away is not reported: the relay tries again)."""
    admin = _admin(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing or not create:
            return missing
        response = await admin.create_topics(
            [_new_topic(n, partitions, replication_factor, topic_configs) for n in missing]
        )
        failed: list[str] = []
        for error in response.topic_errors:
            name, code = str(error[0]), error[1]
            if code == 0:
                log.warning("re-created topic %s, which had been deleted", name)
            elif code in _CANNOT_CREATE:
                log.error("cannot re-create topic %s: %s", name, error[1:])
                failed.append(name)
        return failed
    finally:
        await admin.close()
