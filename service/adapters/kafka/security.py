"""The one place that turns the Kafka settings (bootstrap servers, KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_*, KAFKA_SSL_*) into client arguments: every aiokafka client of the service and of
its operator commands is built with `KafkaAccess.client_kwargs()`, the FastStream broker with
`KafkaAccess.broker_security()` (tests/unit/test_kafka_security.py checks that no client is
built without them)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import SecretStr

from service.config import Settings

_BROKER_SASL: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


@dataclass(frozen=True)
class KafkaAccess:
    """Where Kafka is and how to prove who we are. The password never shows in its repr."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context that checks the broker's certificate (against KAFKA_SSL_CAFILE, or
        the system's CAs) and its host name; with a client certificate when one is given."""
        if not self.uses_tls:
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
        )
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """The aiokafka arguments of any client: bootstrap servers and security."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            mechanism, username, password = self._credentials()
            kwargs |= {
                "sasl_mechanism": mechanism,
                "sasl_plain_username": username,
                "sasl_plain_password": password,
            }
        return kwargs

    def _credentials(self) -> tuple[str, str, str]:
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if not (self.sasl_mechanism and self.sasl_username and password):  # Settings checks it
            raise ValueError(f"{self.security_protocol} needs a SASL mechanism, user and password")
        return self.sasl_mechanism, self.sasl_username, password

    def broker_security(self) -> BaseSecurity | None:
        """FastStream's security object for KafkaBroker(security=...); None: plaintext."""
        context = self.ssl_context()
        if self.uses_sasl:
            mechanism, username, password = self._credentials()
            sasl = _BROKER_SASL[mechanism]
            return sasl(username, password, ssl_context=context, use_ssl=self.uses_tls)
        if self.uses_tls:
            return BaseSecurity(ssl_context=context, use_ssl=True)
        return None


def kafka_access(settings: Settings) -> KafkaAccess:
    return KafkaAccess(
        bootstrap=settings.kafka_bootstrap_servers,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
        ssl_cafile=settings.kafka_ssl_cafile,
        ssl_certfile=settings.kafka_ssl_certfile,
        ssl_keyfile=settings.kafka_ssl_keyfile,
    )


async def check_access(kafka: KafkaAccess, timeout: float = 10) -> None:
    """Connects once to a bootstrap server as every client will, and raises KafkaRefused when
    Kafka refuses the credentials or the TLS handshake fails (a client would only say "Unable
    to bootstrap", and be retried). A server that does not answer is left to the clients."""
    if not (kafka.uses_sasl or kafka.uses_tls):
        return
    kwargs = kafka.client_kwargs()
    del kwargs["bootstrap_servers"]
    for host, port, _ in collect_hosts(kafka.bootstrap):
        try:
            conn = await create_conn(
                host, port, client_id="auto-topup", request_timeout_ms=int(timeout * 1000), **kwargs
            )
        except (OSError, KafkaError, TimeoutError) as exc:
            refused = refusal(exc)
            if refused is not None:
                raise refused from None
            continue
        conn.close()
        return


_SASL_REFUSALS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


class KafkaRefused(Exception):
    """Kafka refused who we are (wrong SASL credentials, a certificate that does not verify):
    no wait fixes it, so start-up stops with one line instead of retrying."""


def refusal(exc: BaseException) -> KafkaRefused | None:
    """The one-line KafkaRefused for a failure that is a credentials or TLS problem, or None."""
    if isinstance(exc, KafkaRefused):
        return exc
    if isinstance(exc, _SASL_REFUSALS):
        return KafkaRefused(
            "Kafka refused the SASL credentials (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, "
            f"KAFKA_SASL_MECHANISM): {_first_line(exc)}"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return KafkaRefused(
            "the Kafka broker's TLS certificate does not verify (KAFKA_SSL_CAFILE): "
            f"{getattr(exc, 'verify_message', None) or _first_line(exc)}"
        )
    if isinstance(exc, ssl.SSLError):
        return KafkaRefused(f"TLS with Kafka failed (KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_*): {exc}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
