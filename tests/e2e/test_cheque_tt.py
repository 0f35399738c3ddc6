"""The service as a black box: contract events in, contract events out, real broker and DB."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest

from service.contract.codec import output_event_id
from tests.conftest import Infra
from tests.e2e.conftest import pinned_offset, service_now
from tests.factories import balance_wire, dumps, settings_wire
from tests.kafka_tools import Record, TopicReader, produce
from tests.service_process import ServiceProcess, Topics


@pytest.fixture
def clock_offset() -> float:
    """The service's clock at 10:00 UTC today or yesterday (AUTO_TOPUP_TEST_CLOCK): far from
    the day boundary, whatever the hour the tests run at; events are dated from it."""
    return pinned_offset()


def _key(customer_id: str) -> bytes:
    return customer_id.encode()


async def test_low_balance_publishes_one_invoice_request(
    infra: Infra, topics: Topics, service: ServiceProcess, clock_offset: float
) -> None:
    customer = f"cust-{uuid.uuid4().hex[:6]}"
    now = service_now(clock_offset)
    settings = settings_wire(
        customer, trigger="250.00", threshold="20.00", at=now - timedelta(seconds=2), version=1
    )
    low = balance_wire(customer, "19.99", at=now, sequence=10)
    await produce(infra.kafka, topics["SETTINGS_UPDATED"], [(_key(customer), dumps(settings))])
    await produce(infra.kafka, topics["WALLET_BALANCE_CHANGED"], [(_key(customer), dumps(low))])

    async with TopicReader(
        infra.kafka, topics["INVOICE_REQUESTED"], topics["AUTO_TOPUP_DEAD_LETTER"]
    ) as reader:
        await reader.wait_for(
            lambda rs: any(r.topic == topics["INVOICE_REQUESTED"] for r in rs),
            what="invoice-requested",
        )
        (invoice,) = reader.on(topics["INVOICE_REQUESTED"])
        body = invoice.json()
        business_date = now.date().isoformat()
        assert invoice.key == _key(customer)
        assert body == {
            "event_id": output_event_id(customer, now.date(), "invoice-requested"),
            "customer_id": customer,
            "business_date": business_date,
            "idempotency_key": f"{customer}/{business_date}",
            # The two topics are not ordered with each other: if the balance is applied first,
            # the settings that turn auto-trigger on are what makes the top-up due.
            "trigger_event_id": body["trigger_event_id"],
            "balance_at_trigger": "19.99",
            "limit_threshold": "20.00",
            "amount": "250.00",
            "currency": "USD",
            "payment_method": "cheque_tt",
            "emitted_at": body["emitted_at"],
            "amount_mode": "fixed",
        }
        assert datetime.fromisoformat(body["emitted_at"]).tzinfo is not None
        assert body["trigger_event_id"] in (low["event_id"], settings["event_id"])
        # CloudEvents Kafka binding (binary mode): attributes in headers, payload unchanged.
        assert {k: v.decode() for k, v in invoice.headers.items() if k.startswith("ce_")} == {
            "ce_specversion": "1.0",
            "ce_id": body["event_id"],
            "ce_type": "com.auto-topup.invoice-requested.v1",
            "ce_source": "/auto-topup",
            "ce_subject": customer,
            "ce_time": body["emitted_at"],
        }
        assert invoice.headers["content-type"] == b"application/json"

        # The same inputs again (a redelivery or a replay), then a marker on the same
        # partition: once the marker is dead-lettered, the repeats were processed.
        await produce(infra.kafka, topics["SETTINGS_UPDATED"], [(_key(customer), dumps(settings))])
        lower = balance_wire(customer, "5.00", at=service_now(clock_offset), sequence=11)
        await produce(
            infra.kafka,
            topics["WALLET_BALANCE_CHANGED"],
            [
                (_key(customer), dumps(low)),
                (_key(customer), dumps(lower)),
                (_key(customer), b"marker: not json"),
            ],
        )
        await reader.wait_for(
            lambda rs: any(r.value == b"marker: not json" for r in rs),
            what="the marker in the dead-letter topic",
        )
        await reader.drain()
        assert len(reader.on(topics["INVOICE_REQUESTED"])) == 1


async def test_malformed_message_is_dead_lettered_and_consumption_goes_on(
    infra: Infra, topics: Topics, service: ServiceProcess, clock_offset: float
) -> None:
    customer = f"cust-{uuid.uuid4().hex[:6]}"
    now = service_now(clock_offset)
    garbage = b'{"event_id": "x", "balance": 1.5e99999'
    naive = balance_wire(customer, "1.00", occurred_at="2026-11-25T10:00:00")
    await produce(
        infra.kafka,
        topics["SETTINGS_UPDATED"],
        [(_key(customer), dumps(settings_wire(customer, at=now - timedelta(seconds=1))))],
    )
    await produce(
        infra.kafka,
        topics["WALLET_BALANCE_CHANGED"],
        [
            (_key(customer), garbage),
            (_key(customer), dumps(naive)),
            (_key(customer), dumps(balance_wire(customer, "3.00", at=now))),
        ],
    )
    async with TopicReader(
        infra.kafka, topics["INVOICE_REQUESTED"], topics["AUTO_TOPUP_DEAD_LETTER"]
    ) as reader:
        await reader.wait_for(
            lambda rs: (
                len([r for r in rs if r.topic == topics["AUTO_TOPUP_DEAD_LETTER"]]) == 2
                and any(r.topic == topics["INVOICE_REQUESTED"] for r in rs)
            ),
            what="two dead letters and the invoice",
        )
        dead: list[Record] = sorted(
            reader.on(topics["AUTO_TOPUP_DEAD_LETTER"]),
            key=lambda r: int(r.headers["dlq_original_offset"]),
        )
        assert [d.value for d in dead] == [garbage, dumps(naive)]
        assert all(d.key == _key(customer) for d in dead)
        assert [d.headers["dlq_reason"] for d in dead] == [b"invalid_json", b"schema_violation"]
        assert all(
            d.headers["dlq_original_topic"] == topics["WALLET_BALANCE_CHANGED"].encode()
            for d in dead
        )
        assert b"timezone" in dead[1].headers["dlq_detail"]
        invoice = reader.on(topics["INVOICE_REQUESTED"])[0].json()
        assert invoice["balance_at_trigger"] == "3.00"
        assert json.loads(dumps(naive))["customer_id"] == invoice["customer_id"]
