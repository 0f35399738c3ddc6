"""Structured JSON logs, one object per line."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# Secrets that must never reach a log line, whatever logs them at whatever level: Stripe API
# keys, a PaymentIntent's or SetupIntent's client_secret (which lets a browser confirm it), and
# any JSON field or query parameter named like a secret.
_SECRETS = re.compile(
    r"\b(?:sk|rk)_(?:test|live)_\w+"
    r"|\b(?:pi|seti|src)_[0-9A-Za-z]+_secret_[0-9A-Za-z]+"
    r"|(?<=client_secret)(?:\\?[\"']?\s*[:=]\s*\\?[\"']?)[^\s\"'&,}\\]+",
    re.IGNORECASE,
)
# Loggers whose DEBUG lines carry request and response bodies (a PaymentIntent's client_secret
# among them): INFO at most, even when the service runs at DEBUG.
_BODY_LOGGERS = ("stripe", "httpx", "httpcore", "urllib3", "requests")


def redact(text: str) -> str:
    """The text with every secret it contains replaced by [redacted]."""
    return _SECRETS.sub(_redacted, text)


def _redacted(match: re.Match[str]) -> str:
    found = match.group(0)
    if found[:1] in "=:\"'\\ ":  # client_secret's value: keep what separates it
        head = re.match(r"[\\\"'\s:=]*", found)
        return (head.group(0) if head else "") + "[redacted]"
    return "[redacted]"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "faststream"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
