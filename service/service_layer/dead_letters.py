"""Dead letters as the operator commands see them: what one is, which ones a command selects,
and what a redrive publishes (pure: the Kafka side is adapters/kafka/dead_letters.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.contract import messages

UNKNOWN = "unknown"  # the reason shown for a record without the dlq_* headers
DLQ_HEADER_PREFIX = "dlq_"


class DlqError(Exception):
    """A failure told to the operator in one line (exit code 1)."""


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, as read (any record: foreign ones too)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    def header(self, name: str) -> str | None:
        """The last header of that name (the service appends its own after the original ones)."""
        for hname, value in reversed(self.headers):
            if hname == name:
                return None if value is None else value.decode("utf-8", "replace")
        return None

    @property
    def reason(self) -> str:
        return self.header(messages.DLQ_REASON) or UNKNOWN

    @property
    def detail(self) -> str | None:
        return self.header(messages.DLQ_DETAIL)

    @property
    def dead_lettered_at(self) -> str | None:
        return self.header(messages.DLQ_AT)

    @property
    def original_topic(self) -> str | None:
        return self.header(messages.DLQ_TOPIC) or None

    @property
    def original_partition(self) -> int | None:
        return _int(self.header(messages.DLQ_PARTITION))

    @property
    def original_offset(self) -> int | None:
        return _int(self.header(messages.DLQ_OFFSET))

    @property
    def redrive_headers(self) -> tuple[tuple[str, bytes | None], ...]:
        """The original headers (an earlier redrive's mark left out) and this redrive's mark:
        where this dead letter was read."""
        mark = f"{self.topic}/{self.partition}/{self.offset}".encode()
        kept = tuple((n, v) for n, v in self.original_headers if n != messages.REDRIVE)
        return (*kept, (messages.REDRIVE, mark))

    @property
    def original_headers(self) -> tuple[tuple[str, bytes | None], ...]:
        """Every header except the dlq_* ones: what the original record carried."""
        return tuple((n, v) for n, v in self.headers if not n.startswith(DLQ_HEADER_PREFIX))

    @property
    def where(self) -> str:
        return f"{self.partition}@{self.offset}"

    @property
    def original(self) -> str:
        if self.original_topic is None:
            return "-"
        partition = "?" if self.original_partition is None else self.original_partition
        offset = "?" if self.original_offset is None else self.original_offset
        return f"{self.original_topic}[{partition}]@{offset}"

    def identity(self) -> tuple[object, ...]:
        """Two dead letters with the same identity would publish the same record."""
        return (self.original_topic, self.key, self.value, self.original_headers)

    def to_json(self) -> dict[str, Any]:
        key, key_encoding = _encoded(self.key)
        value, value_encoding = _encoded(self.value)
        headers = []
        for name, raw in self.original_headers:
            text, encoding = _encoded(raw)
            headers.append({"name": name, "value": text, "encoding": encoding})
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": _iso_ms(self.timestamp_ms),
            "dead_lettered_at": self.dead_lettered_at,
            "reason": self.reason,
            "detail": self.detail,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "key": key,
            "key_encoding": key_encoding,
            "value": value,
            "value_encoding": value_encoding,
            "headers": headers,
        }


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _encoded(raw: bytes | None) -> tuple[str | None, str | None]:
    """Text when the bytes are UTF-8, else base64; (None, None) for no bytes at all."""
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _iso_ms(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")


def printable(text: str) -> str:
    """Control characters escaped, so that a value cannot move the cursor or break a row."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


@dataclass(frozen=True)
class Plan:
    publish: list[DeadLetter]
    skipped: list[tuple[DeadLetter, str]]
    duplicates: int


def plan_redrive(selected: Sequence[DeadLetter], inputs: Iterable[str]) -> Plan:
    """What to publish, in the original order; what to skip and why."""
    allowed = tuple(inputs)
    publish: list[DeadLetter] = []
    skipped: list[tuple[DeadLetter, str]] = []
    seen: set[tuple[object, ...]] = set()
    duplicates = 0
    ordered = sorted(
        selected,
        key=lambda d: (
            d.original_topic or "",
            d.original_partition if d.original_partition is not None else -1,
            d.original_offset if d.original_offset is not None else -1,
            d.timestamp_ms,
        ),
    )
    for dead in ordered:
        if dead.original_topic is None:
            skipped.append((dead, f"no {messages.DLQ_TOPIC} header (not a dead letter of ours)"))
        elif dead.original_topic not in allowed:
            skipped.append(
                (
                    dead,
                    f"original topic {dead.original_topic} is not an input topic of the service "
                    f"({', '.join(allowed)})",
                )
            )
        elif dead.key is None and dead.value is None:
            skipped.append((dead, "it has neither key nor value"))
        elif dead.header(messages.DLQ_TRUNCATED) == "true" or (
            dead.header(messages.DLQ_KEY_TRUNCATED) == "true"
        ):
            skipped.append(
                (
                    dead,
                    "it holds only the first 64 KiB of the original (dlq_truncated): "
                    "republish the original from its source",
                )
            )
        elif dead.identity() in seen:
            duplicates += 1  # the same record dead-lettered twice is published once
        else:
            seen.add(dead.identity())
            publish.append(dead)
    return Plan(publish, skipped, duplicates)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on: all of them, or those matching every filter."""

    reason: str | None = None
    customer: str | None = None  # the record's key (the contract's key is the customer_id)
    positions: frozenset[tuple[int, int]] = frozenset()  # (partition, offset) in the DLQ topic
    since: datetime | None = None  # dead-lettered (the record's Kafka timestamp) at or after

    @property
    def any(self) -> bool:
        """Whether any filter is set (else: every dead letter)."""
        return bool(self.reason or self.customer or self.positions or self.since)

    def matches(self, dead: DeadLetter) -> bool:
        return (
            (self.since is None or dead.timestamp_ms >= self.since.timestamp() * 1000)
            and (self.reason is None or dead.reason == self.reason)
            and (self.customer is None or dead.key == self.customer.encode("utf-8"))
            and (not self.positions or (dead.partition, dead.offset) in self.positions)
        )

    def describe(self) -> str:
        parts = []
        if self.reason:
            parts.append(f"with reason {self.reason}")
        if self.customer:
            parts.append(f"of customer {printable(self.customer)}")
        if self.positions:
            parts.append("at " + ", ".join(f"{p}@{o}" for p, o in sorted(self.positions)))
        if self.since:
            parts.append(f"since {self.since.isoformat()}")
        return (" " + " ".join(parts)) if parts else ""


def select(letters: list[DeadLetter], selection: Selection) -> list[DeadLetter]:
    chosen = [d for d in letters if selection.matches(d)]
    missing = selection.positions - {(d.partition, d.offset) for d in chosen}
    if missing:
        where = ", ".join(f"{p}@{o}" for p, o in sorted(missing))
        raise DlqError(f"no dead letter{selection.describe()} at {where}")
    return chosen
