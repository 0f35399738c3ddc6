"""`make demo`: publishes example events to the running service and prints what it publishes.

Customers get fresh ids on every run, so the once-a-day rule never hides the demo's output.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from service.adapters.kafka.security import check_access, kafka_access
from service.adapters.kafka.topics import partitions_of
from service.config import Settings, Topics, describe_error


def _event(customer_id: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": at.isoformat(),
        "customer_id": customer_id,
        **fields,
    }


def examples(run: str, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """(topic key, event) pairs: one customer per method, one that is not due."""
    earlier = now - timedelta(seconds=30)
    cheque, master, partner, fine = (f"{n}-{run}" for n in ("acme", "beta", "reseller", "gamma"))
    return [
        (
            "settings",
            _event(
                cheque,
                earlier,
                origin="finance_app",
                payment_method="cheque_tt",
                auto_trigger=True,
                trigger_amount="500.00",
                limit_threshold="50.00",
                currency="USD",
            ),
        ),
        ("balance", _event(partner, earlier, currency="USD", balance="10000.00", sequence=1)),
        (
            "settings",
            _event(
                master,
                earlier,
                origin="finance_app",
                payment_method="master_account",
                partner_id=partner,
                auto_trigger=True,
                trigger_amount="200.00",
                limit_threshold="20.00",
                currency="USD",
            ),
        ),
        (
            "settings",
            _event(
                fine,
                earlier,
                origin="finance_app",
                payment_method="cheque_tt",
                auto_trigger=True,
                trigger_amount="100.00",
                limit_threshold="10.00",
                currency="USD",
            ),
        ),
        ("balance", _event(cheque, now, currency="USD", balance="49.99", sequence=7)),
        ("balance", _event(master, now, currency="USD", balance="-3.50", sequence=3)),
        ("balance", _event(fine, now, currency="USD", balance="75.00", sequence=2)),
        ("balance", {"customer_id": cheque, "note": "a malformed event, for the dead letters"}),
    ]


async def main(wait: float = 20.0) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(describe_error(exc), file=sys.stderr)
        return 2
    topics = settings.topics
    outputs = [
        topics.invoice_requested,
        topics.credit_issued,
        topics.top_up_failed,
        topics.dead_letter,
    ]
    kafka = kafka_access(settings)
    await check_access(kafka)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        try:
            partitions = await partitions_of(kafka, outputs)
        except LookupError as exc:
            # The service creates its topics at start-up, unless AUTO_TOPUP_CREATE_TOPICS=false.
            hint = (
                "is the service running (`make run`)?"
                if settings.create_topics
                else "AUTO_TOPUP_CREATE_TOPICS=false: create the topics first "
                '(docs/operating.md "Topics")'
            )
            print(f"{exc}: {hint}", file=sys.stderr)
            return 1
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # fix the start before publishing
        run = uuid.uuid4().hex[:6]
        await _publish(producer, topics, run)
        return await _show_outputs(consumer, run, wait)
    finally:
        await producer.stop()
        await consumer.stop()


async def _publish(producer: AIOKafkaProducer, topics: Topics, run: str) -> None:
    """The example events of this run, each to its input topic."""
    for kind, event in examples(run, datetime.now(UTC)):
        topic = topics.wallet_balance_changed if kind == "balance" else topics.settings_updated
        await producer.send_and_wait(
            topic, json.dumps(event).encode(), key=event["customer_id"].encode()
        )
        print(f">> {topic:<28} {json.dumps(event)}")


async def _show_outputs(consumer: AIOKafkaConsumer, run: str, wait: float) -> int:
    """Prints this run's output records as they come; 1 if not all came within `wait`."""
    expected = 3  # invoice, credit, dead letter for the malformed event; nothing for gamma
    seen = 0
    deadline = time.monotonic() + wait
    while seen < expected and time.monotonic() < deadline:
        for tp, records in (await consumer.getmany(timeout_ms=500)).items():
            for r in records:
                if r.key is None or not r.key.decode(errors="replace").endswith(run):
                    continue
                seen += 1
                reason = dict(r.headers).get("dlq_reason", b"").decode()
                shown = r.value.decode(errors="replace") if r.value else ""
                extra = f" [dlq_reason={reason}]" if reason else ""
                print(f"<< {tp.topic:<28} {shown}{extra}")
    if seen < expected:
        print(
            f"saw {seen} of {expected} expected output records within {wait:.0f}s", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
