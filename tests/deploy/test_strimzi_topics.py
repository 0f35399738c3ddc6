"""The topics of deploy/k8s/topics, Strimzi KafkaTopics: each validates against a schema written
here from Strimzi's API reference (KafkaTopic, kafka.strimzi.io/v1beta2), and they agree with
deploy/k8s/configmap.yaml (names, partitions, replicas, min.insync.replicas), with each other
(the input topics co-partitioned), with the dead letters' retention, and with the
`kafka-topics.sh --create` commands of docs/operating.md "Topics"."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from service.adapters.kafka.producer import TOPIC_MAX_MESSAGE_BYTES
from tests.deploy.files import (
    CR_METADATA,
    K8S,
    ROOT,
    STRING_MAP,
    Doc,
    config_data,
    custom_resource,
    load_yaml,
    schema_errors,
    setting,
)

TOPICS = K8S / "topics"
OPERATING = ROOT / "docs" / "operating.md"
DAY_MS = 24 * 3600 * 1000
# The settings that name the topics: the inputs (co-partitioned) first.
INPUTS = (
    "AUTO_TOPUP_TOPIC_WALLET_BALANCE_CHANGED",
    "AUTO_TOPUP_TOPIC_SETTINGS_UPDATED",
    "AUTO_TOPUP_TOPIC_INVOICE_STATUS_CHANGED",
)
OUTPUTS = (
    "AUTO_TOPUP_TOPIC_INVOICE_REQUESTED",
    "AUTO_TOPUP_TOPIC_CREDIT_ISSUED",
    "AUTO_TOPUP_TOPIC_TOP_UP_FAILED",
    "AUTO_TOPUP_TOPIC_AUTO_TOPUP_NOTICE",
    "AUTO_TOPUP_TOPIC_AUTO_TOPUP_DEAD_LETTER",
)


def test_every_topic_of_the_service_is_listed() -> None:
    from service.config import Topics

    assert sorted(names(INPUTS + OUTPUTS)) == sorted(Topics().all)


# KafkaTopicSpec: topicName (defaults to metadata.name), partitions (cannot be decreased),
# replicas, config (the topic's configs; Strimzi keeps any value: strings, numbers, booleans).
# Its CRD: partitions minimum 1; replicas minimum 1, maximum 32767. The Topic Operator acts
# only on KafkaTopics labelled strimzi.io/cluster with the name of its Kafka resource.
KAFKA_TOPIC_SCHEMA: Doc = custom_resource(
    "kafka.strimzi.io/v1beta2",
    "KafkaTopic",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "topicName": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,249}$"},
            "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": {
                "type": "object",
                "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
            },
        },
    },
    metadata={
        **CR_METADATA,
        "required": ["name", "labels"],
        "properties": {
            **CR_METADATA["properties"],
            "labels": {**STRING_MAP, "required": ["strimzi.io/cluster"]},
        },
    },
)


def topic_files() -> list[Path]:
    return sorted(p for p in TOPICS.glob("*.yaml") if p.name != "kustomization.yaml")


def topics() -> dict[str, Doc]:
    """Topic name -> its KafkaTopic's spec."""
    found: dict[str, Doc] = {}
    for path in topic_files():
        doc = load_yaml(path)
        name = doc["spec"].get("topicName", doc["metadata"]["name"])
        assert name not in found, f"{path.name}: {name} a second time"
        found[name] = doc["spec"]
    return found


def names(settings: tuple[str, ...]) -> list[str]:
    return [setting(s) for s in settings]


@pytest.mark.parametrize("path", topic_files(), ids=lambda p: p.name)
def test_kafka_topic_matches_strimzis_schema(path: Path) -> None:
    assert schema_errors(KAFKA_TOPIC_SCHEMA, load_yaml(path)) == []


def test_schema_rejects_what_strimzi_would() -> None:
    good = load_yaml(topic_files()[0])
    for broken in (
        {**good, "spec": {**good["spec"], "replicas": 0}},
        {**good, "spec": {**good["spec"], "partition": 6}},
        {**good, "apiVersion": "kafka.strimzi.io/v1alpha1"},
        {**good, "metadata": {"name": good["metadata"]["name"]}},
    ):
        assert schema_errors(KAFKA_TOPIC_SCHEMA, broken), broken


def test_a_separate_kustomization_lists_every_topic_and_deploy_k8s_does_not() -> None:
    kustomization = load_yaml(TOPICS / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in topic_files()]
    service = load_yaml(K8S / "kustomization.yaml")
    assert not any(
        "topics" in entry for key in ("resources", "components") for entry in service.get(key, [])
    ), "deploy/k8s must not apply the topics by default"


def test_every_topic_the_service_reads_or_writes_and_no_other() -> None:
    assert sorted(topics()) == sorted(names(INPUTS + OUTPUTS))


def test_the_configmap_leaves_the_topics_to_the_platform_with_three_replicas() -> None:
    data = config_data()
    assert data["AUTO_TOPUP_CREATE_TOPICS"] == "false"
    assert data["AUTO_TOPUP_TOPIC_REPLICATION_FACTOR"] == "3"
    assert data["AUTO_TOPUP_TOPIC_MIN_INSYNC_REPLICAS"] == "2"


def test_partitions_replicas_and_min_insync_replicas_agree_with_the_configmap() -> None:
    partitions = int(setting("AUTO_TOPUP_TOPIC_PARTITIONS"))
    replicas = int(setting("AUTO_TOPUP_TOPIC_REPLICATION_FACTOR"))
    insync = int(setting("AUTO_TOPUP_TOPIC_MIN_INSYNC_REPLICAS"))
    assert 1 < insync < replicas, "one replica may be down without stopping the sends"
    for name, spec in topics().items():
        assert (spec["partitions"], spec["replicas"]) == (partitions, replicas), name
        assert int(spec["config"]["min.insync.replicas"]) == insync, name


def test_the_input_topics_are_co_partitioned() -> None:
    by_name = topics()
    counts = {by_name[name]["partitions"] for name in names(INPUTS)}
    assert len(counts) == 1, counts


def test_each_topic_states_its_cleanup_and_retention() -> None:
    for name, spec in topics().items():
        config = spec["config"]
        assert config["cleanup.policy"] in ("delete", "compact", "compact,delete"), name
        assert int(config["retention.ms"]) >= DAY_MS, name


def test_input_records_go_before_the_dead_letters_rows() -> None:
    """A dead letter's row stops a replay from dead-lettering the same input record twice: it
    must outlive the record (retention.ms + segment.ms: Kafka deletes whole segments)."""
    rows_ms = int(setting("AUTO_TOPUP_RETENTION_DEAD_LETTERS_DAYS")) * DAY_MS
    assert rows_ms > 0
    by_name = topics()
    for name in names(INPUTS):
        config = by_name[name]["config"]
        assert config["cleanup.policy"] == "delete", name
        readable = int(config["retention.ms"]) + int(config["segment.ms"])
        assert readable < rows_ms, name


def test_the_dead_letter_topic_takes_the_largest_record() -> None:
    spec = topics()[setting("AUTO_TOPUP_TOPIC_AUTO_TOPUP_DEAD_LETTER")]
    assert int(spec["config"]["max.message.bytes"]) >= TOPIC_MAX_MESSAGE_BYTES


def _documented_commands() -> dict[str, Doc]:
    """The `kafka-topics.sh --create` commands of docs/operating.md "Topics", as specs."""
    text = OPERATING.read_text(encoding="utf-8")
    section = text.split("\n## Topics\n", 1)[1].split("\n## ", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", section)
    found: dict[str, Doc] = {}
    for line in joined.splitlines():
        if not line.startswith("kafka-topics.sh ") or "--create" not in line:
            continue
        words = shlex.split(line)
        options = [
            (words[i], words[i + 1])
            for i, w in enumerate(words)
            if w.startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("--")
        ]
        value = dict(options)
        config = dict(v.split("=", 1) for k, v in options if k == "--config")
        found[value["--topic"]] = {
            "partitions": int(value["--partitions"]),
            "replicas": int(value["--replication-factor"]),
            "config": config,
        }
    return found


def test_the_documented_commands_make_the_same_topics() -> None:
    documented = _documented_commands()
    manifests = {
        name: {**spec, "config": {k: str(v) for k, v in spec["config"].items()}}
        for name, spec in topics().items()
    }
    assert documented == manifests
