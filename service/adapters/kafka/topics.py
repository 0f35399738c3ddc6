"""Creates the service's topics when they are missing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


async def partitions_of(bootstrap: str, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the named topics; a missing topic is an error."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="auto-topup-admin")
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


async def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int, replication_factor: int
) -> list[str]:
    """Creates each missing topic; returns the names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="auto-topup-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return []
        with contextlib.suppress(TopicAlreadyExistsError):  # another instance was first
            await admin.create_topics(
                [NewTopic(n, partitions, replication_factor) for n in missing]
            )
        log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
