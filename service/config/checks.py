"""Checks of several settings together, and how a bad setting is told."""

from __future__ import annotations

import os
from typing import Protocol

from pydantic import SecretStr


class KafkaSecurity(Protocol):
    """The Kafka security settings (of `Settings`)."""

    @property
    def kafka_security_protocol(self) -> str: ...
    @property
    def kafka_sasl_mechanism(self) -> str | None: ...
    @property
    def kafka_sasl_username(self) -> str | None: ...
    @property
    def kafka_sasl_password(self) -> SecretStr | None: ...
    @property
    def kafka_ssl_cafile(self) -> str | None: ...
    @property
    def kafka_ssl_certfile(self) -> str | None: ...
    @property
    def kafka_ssl_keyfile(self) -> str | None: ...


def kafka_security_problem(s: KafkaSecurity) -> str | None:
    """What is wrong with the KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* settings
    taken together, or None."""
    protocol = s.kafka_security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    password = s.kafka_sasl_password
    given = {
        "KAFKA_SASL_MECHANISM": s.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": s.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": password.get_secret_value() if password is not None else None,
    }
    if sasl:
        missing = [name for name, value in given.items() if not value]
        if missing:
            return f"KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}"
    elif any(given.values()):
        named = ", ".join(name for name, value in given.items() if value)
        return f"{named} need KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL, not {protocol}"
    files = {
        "KAFKA_SSL_CAFILE": s.kafka_ssl_cafile,
        "KAFKA_SSL_CERTFILE": s.kafka_ssl_certfile,
        "KAFKA_SSL_KEYFILE": s.kafka_ssl_keyfile,
    }
    if not tls and any(files.values()):
        named = ", ".join(name for name, value in files.items() if value)
        return f"{named} need KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL, not {protocol}"
    unreadable = [f"{name}={path}" for name, path in files.items() if path and not _readable(path)]
    if unreadable:
        return f"no such readable file: {', '.join(unreadable)}"
    if s.kafka_ssl_keyfile and not s.kafka_ssl_certfile:
        return "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate)"
    return None


def _readable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def describe_error(exc: Exception) -> str:
    """One line per bad setting, naming the environment variable."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(p) for p in err["loc"])
        if not name:  # a check of several settings together: its message names them
            lines.append(f"configuration error: {err['msg'].removeprefix('Value error, ')}")
            continue
        lines.append(f"configuration error: {name}: {err['msg']}")
    return "\n".join(lines)
