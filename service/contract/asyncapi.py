"""The AsyncAPI 3 document of the contract, built from the published schemas (published.py),
the headers of each message (headers.py) and one example of each (examples.py)."""

from __future__ import annotations

import inspect
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from service.config import Topics
from service.contract import events, examples, headers, messages
from service.contract.published import Schema, event_schema, for_generators, pascal

# 3.0.0, not 3.1.0: both validate without errors (the CLI notes that 3.1.0 is current), but
# Modelina generates no model from a 3.1.0 document (make contract-models).
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
LOCAL_BOOTSTRAP = "127.0.0.1:9092"
DEAD_LETTER_TITLE = "DeadLetter"


class Message(NamedTuple):
    topic: str  # the topic's default name, also the message's kebab-case name
    model: type[BaseModel] | None  # None: the dead letter, whose value is the original bytes
    direction: Literal["in", "out"]


MESSAGES = (
    Message("wallet-balance-changed", events.WalletBalanceChanged, "in"),
    Message("settings-updated", events.SettingsUpdated, "in"),
    Message("invoice-status-changed", events.InvoiceStatusChanged, "in"),
    Message(messages.INVOICE_REQUESTED, events.InvoiceRequested, "out"),
    Message(messages.CREDIT_ISSUED, events.CreditIssued, "out"),
    Message(messages.TOP_UP_FAILED, events.TopUpFailed, "out"),
    Message(messages.AUTO_TOPUP_NOTICE, events.AutoTopupNotice, "out"),
    Message("auto-topup-dead-letter", None, "out"),
)

DEAD_LETTER_DESCRIPTION = (
    "An input message that could not be accepted. Key and value are the original message's, "
    "byte for byte (each cut to its first 64 KiB, with headers saying so), so that a redrive "
    "can publish it back as it was. The headers say where it was read and why it was refused; "
    "the original message's own headers are kept as well."
)
DEAD_LETTER_VALUE: Schema = {
    "title": "DeadLetterValue",
    "type": "string",
    "description": "The original record's value, unchanged (not always JSON, not always UTF-8).",
}
KEY: Schema = {
    "type": "string",
    "pattern": headers.CUSTOMER_ID_PATTERN,
    "description": "customer_id, UTF-8: every event of one customer is on one partition, in order.",
}
DEAD_LETTER_KEY: Schema = {
    "type": "string",
    "description": "the original record's key, unchanged (a customer_id when it was valid)",
}


def name_of(message: Message) -> str:
    """The message's PascalCase name: CreditIssued, TopUpFailed, ..., DeadLetter."""
    return DEAD_LETTER_TITLE if message.model is None else pascal(message.topic)


def _headers(message: Message) -> Schema:
    if message.model is None:
        return headers.DEAD_LETTER_HEADERS
    if message.direction == "in":
        return headers.INPUT_HEADERS
    return {**headers.output_headers(message.topic), "title": f"{name_of(message)}Headers"}


def _payload(message: Message) -> Schema:
    if message.model is None:
        return DEAD_LETTER_VALUE
    return for_generators(event_schema(message.topic, message.model, message.direction))


def _description(message: Message) -> str:
    if message.model is None:
        return DEAD_LETTER_DESCRIPTION
    # cleandoc: Python 3.13 dedents docstrings when it compiles them, 3.11 and 3.12 do not.
    return inspect.cleandoc(message.model.__doc__ or "")


def _message(message: Message) -> Schema:
    name = name_of(message)
    return {
        "name": name,
        "title": name,
        "summary": _description(message),
        "contentType": "application/octet-stream" if message.model is None else "application/json",
        "headers": {"$ref": f"#/components/schemas/{_headers(message)['title']}"},
        "payload": {"$ref": f"#/components/schemas/{name_of(message)}"},
        "bindings": {
            "kafka": {
                "key": DEAD_LETTER_KEY if message.model is None else KEY,
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "examples": examples.of(message.topic),
    }


def _addresses(topics: Topics) -> dict[str, str]:
    return dict(zip((m.topic for m in MESSAGES), topics.all, strict=True))


def _channel(message: Message, address: str) -> Schema:
    return {
        "address": address,
        "title": message.topic,
        "description": f"{_description(message)} Topic name set by "
        f"AUTO_TOPUP_TOPIC_{message.topic.upper().replace('-', '_')}.",
        "messages": {name_of(message): {"$ref": f"#/components/messages/{name_of(message)}"}},
        "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING}},
    }


def _operation(message: Message) -> Schema:
    ref = f"#/channels/{message.topic}"
    verb = "receive" if message.direction == "in" else "send"
    return {
        "action": verb,
        "title": f"{verb} {name_of(message)}",
        "channel": {"$ref": ref},
        "messages": [{"$ref": f"{ref}/messages/{name_of(message)}"}],
    }


SECURITY: dict[str, Schema] = {
    "scramSha512": {
        "type": "scramSha512",
        "description": "KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT), "
        "KAFKA_SASL_MECHANISM=SCRAM-SHA-512, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD.",
    },
    "scramSha256": {
        "type": "scramSha256",
        "description": "As scramSha512, with KAFKA_SASL_MECHANISM=SCRAM-SHA-256.",
    },
    "plain": {
        "type": "plain",
        "description": "As scramSha512, with KAFKA_SASL_MECHANISM=PLAIN (only over TLS).",
    },
    "mutualTls": {
        "type": "X509",
        "description": "KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL) with a client certificate: "
        "KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE; KAFKA_SSL_CAFILE names the broker's CA.",
    },
}


def _servers() -> Schema:
    variables = {
        "bootstrap": {
            "default": LOCAL_BOOTSTRAP,
            "description": "KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port...]. "
            "The default is the local stack's (make up).",
        }
    }
    refs = [{"$ref": f"#/components/securitySchemes/{name}"} for name in SECURITY]
    return {
        "plaintext": {
            "host": "{bootstrap}",
            "protocol": "kafka",
            "description": "KAFKA_SECURITY_PROTOCOL=PLAINTEXT (the default; the local stack).",
            "variables": variables,
        },
        "secure": {
            "host": "{bootstrap}",
            "protocol": "kafka-secure",
            "description": "TLS (KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL), with one of the "
            "security schemes. The local stack's SASL_SSL listener is 127.0.0.1:9094.",
            "variables": {
                **variables,
                "bootstrap": {**variables["bootstrap"], "default": "127.0.0.1:9094"},
            },
            "security": refs,
        },
    }


def document(topics: Topics | None = None, version: str = "1.0.0") -> dict[str, Any]:
    topics = topics or Topics()
    addresses = _addresses(topics)
    schemas: dict[str, Schema] = {}
    for message in MESSAGES:
        schemas[name_of(message)] = _payload(message)
        schemas[_headers(message)["title"]] = _headers(message)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "auto-topup",
            "version": version,
            "description": "Tops up prepaid customer wallets the moment they run low. Every "
            "message is keyed by customer_id (UTF-8). Compatibility policy: docs/contract.md.",
        },
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": {m.topic: _channel(m, addresses[m.topic]) for m in MESSAGES},
        "operations": {f"{m.direction}-{m.topic}": _operation(m) for m in MESSAGES},
        "components": {
            "messages": {name_of(m): _message(m) for m in MESSAGES},
            "schemas": schemas,
            "securitySchemes": SECURITY,
        },
    }
