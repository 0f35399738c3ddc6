"""Kafka security from one place: the settings, the client arguments, and a scan of service/
that fails when a Kafka client is built without them."""

from __future__ import annotations

import ast
import asyncio
import ssl
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512
from pydantic import ValidationError

from service.adapters.kafka.security import KafkaRefused, kafka_access, refusal
from service.adapters.startup import until_it_works
from service.config import Settings, describe_error

SERVICE = Path(__file__).resolve().parents[2] / "service"
AIOKAFKA_CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}
# Builds a broker only to write the AsyncAPI document: it never connects.
NEVER_CONNECTS = {"contract/asyncapi.py"}
SECRET = "s3cret-Not-For-Logs"


def load(**env: str) -> Settings:
    return Settings(**{"DATABASE_URL": "postgresql://u@h/db", **env})  # type: ignore[arg-type]


def sasl_ssl(tmp_path: Path, **env: str) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text(_self_signed_pem())
    return load(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="auto-topup",
        KAFKA_SASL_PASSWORD=SECRET,
        KAFKA_SSL_CAFILE=str(ca),
        **env,
    )


def _self_signed_pem() -> str:
    # A CA file must hold a certificate; the system's default store has some.
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text()
    pytest.fail("no CA bundle on this machine to build a test CA file from")


def _name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _client_calls() -> list[tuple[str, int, str, ast.Call]]:
    found = []
    for path in sorted(SERVICE.rglob("*.py")):
        where = path.relative_to(SERVICE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and _name(node) in {*AIOKAFKA_CLIENTS, "KafkaBroker"}:
                found.append((where, node.lineno, _name(node), node))
    return found


def _passes_security(name: str, call: ast.Call) -> bool:
    keywords = {k.arg: k.value for k in call.keywords}
    if name == "KafkaBroker":
        security = keywords.get("security")
        return isinstance(security, ast.Call) and _name(security) == "broker_security"
    spread = keywords.get(None)  # **kafka.client_kwargs()
    return (
        isinstance(spread, ast.Call)
        and _name(spread) == "client_kwargs"
        and "bootstrap_servers" not in keywords
    )


def test_every_kafka_client_of_the_service_is_built_with_the_security_settings() -> None:
    calls = _client_calls()
    assert {name for _, _, name, _ in calls} == {*AIOKAFKA_CLIENTS, "KafkaBroker"}
    without = [
        f"service/{where}:{line} {name}"
        for where, line, name, call in calls
        if where not in NEVER_CONNECTS and not _passes_security(name, call)
    ]
    assert not without, "Kafka clients built without KafkaAccess: " + ", ".join(without)


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    access = kafka_access(load(KAFKA_BOOTSTRAP_SERVERS="k:9092"))
    assert access.client_kwargs() == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert access.broker_security() is None


def test_sasl_ssl_gives_aiokafka_and_faststream_the_same_credentials(tmp_path: Path) -> None:
    access = kafka_access(sasl_ssl(tmp_path))
    kwargs = access.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("auto-topup", SECRET)
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    broker = access.broker_security()
    assert isinstance(broker, SASLScram512)
    assert broker.use_ssl
    assert (broker.username, broker.password) == ("auto-topup", SECRET)
    assert SECRET not in repr(access)


def test_sasl_plaintext_and_ssl_alone(tmp_path: Path) -> None:
    plain = kafka_access(
        load(
            KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            KAFKA_SASL_MECHANISM="PLAIN",
            KAFKA_SASL_USERNAME="u",
            KAFKA_SASL_PASSWORD="p",
        )
    )
    assert "ssl_context" not in plain.client_kwargs()
    security = plain.broker_security()
    assert isinstance(security, SASLPlaintext)
    assert not security.use_ssl
    tls = kafka_access(load(KAFKA_SECURITY_PROTOCOL="SSL"))
    assert isinstance(tls.client_kwargs()["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in tls.client_kwargs()
    security = tls.broker_security()
    assert type(security) is BaseSecurity
    assert security.use_ssl


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            "configuration error: KAFKA_SECURITY_PROTOCOL=SASL_SSL needs "
            "KAFKA_SASL_MECHANISM, KAFKA_SASL_PASSWORD",
        ),
        (
            {"KAFKA_SASL_USERNAME": "u"},
            "configuration error: KAFKA_SASL_USERNAME need KAFKA_SECURITY_PROTOCOL "
            "SASL_PLAINTEXT or SASL_SSL, not PLAINTEXT",
        ),
        (
            {"KAFKA_SSL_CAFILE": "/nowhere/ca.pem"},
            "configuration error: KAFKA_SSL_CAFILE need KAFKA_SECURITY_PROTOCOL SSL or "
            "SASL_SSL, not PLAINTEXT",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nowhere/ca.pem"},
            "configuration error: no such readable file: KAFKA_SSL_CAFILE=/nowhere/ca.pem",
        ),
    ],
)
def test_security_settings_are_checked_together(env: dict[str, str], line: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load(**env)
    assert describe_error(caught.value) == line


def test_unknown_protocol_or_mechanism_names_the_variable() -> None:
    with pytest.raises(ValidationError) as caught:
        load(KAFKA_SECURITY_PROTOCOL="TLS", KAFKA_SASL_MECHANISM="GSSAPI")
    text = describe_error(caught.value)
    assert "KAFKA_SECURITY_PROTOCOL:" in text
    assert "KAFKA_SASL_MECHANISM:" in text


def test_the_password_is_never_shown(tmp_path: Path) -> None:
    settings = sasl_ssl(tmp_path)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    with pytest.raises(ValidationError) as caught:
        load(KAFKA_SASL_PASSWORD=SECRET)
    assert SECRET not in describe_error(caught.value)


def test_refused_credentials_are_told_apart_from_an_unreachable_broker() -> None:
    refused = refusal(SaslAuthenticationFailed("Authentication failed during authentication"))
    assert isinstance(refused, KafkaRefused)
    assert "KAFKA_SASL_PASSWORD" in str(refused)
    assert "\n" not in str(refused)
    assert refusal(KafkaConnectionError("Unable to bootstrap")) is None
    assert refusal(ConnectionRefusedError()) is None
    wrong_ca = ssl.SSLCertVerificationError("certificate verify failed")
    assert "KAFKA_SSL_CAFILE" in str(refusal(wrong_ca))


def test_start_up_does_not_wait_for_credentials_that_were_refused() -> None:
    tries = []

    async def step() -> None:
        tries.append(1)
        raise SaslAuthenticationFailed("Authentication failed")

    with pytest.raises(KafkaRefused):
        asyncio.run(until_it_works("Kafka", step))
    assert len(tries) == 1
