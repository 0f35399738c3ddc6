"""Field types of the wire contract, with their JSON Schema."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
)

from service.domain.currencies import ISO_4217

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
# event_id, caused_by: 1 to 128 printable characters: no C0/C1 control characters (NUL
# included), and no lone surrogates (checked apart: JSON Schema patterns cannot say it).
TEXT_ID_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]{1,128}$"
_TEXT_ID_RE = re.compile(TEXT_ID_PATTERN)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
POSITIVE_DECIMAL_PATTERN = r"^(?!0+(\.0+)?$)[0-9]+(\.[0-9]+)?$"
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)

Id = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]


def text_id(value: str) -> bool:
    """An event_id or caused_by of the contract: 1 to 128 printable characters."""
    return _TEXT_ID_RE.match(value) is not None and _SURROGATE_RE.search(value) is None


def _text_id(value: str) -> str:
    if not text_id(value):
        raise ValueError("must be 1 to 128 printable characters (no control characters)")
    return value


def _iso_currency(value: str) -> str:
    if value not in ISO_4217:
        raise ValueError(f"{value[:8]!r} is not an ISO 4217 currency code")
    return value


EventId = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_text_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": TEXT_ID_PATTERN,
            "description": "1 to 128 printable characters (no control characters, no NUL, "
            "no lone surrogates)",
        }
    ),
]
Currency = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_iso_currency),
    WithJsonSchema({"type": "string", "enum": sorted(ISO_4217), "description": "ISO 4217 code"}),
]
Timezone = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
MAX_COUNT = 2**63 - 1  # a PostgreSQL bigint
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
Flag = StrictBool


_MONEY_LIMIT = Decimal(10) ** 18
_MONEY_MAX_DECIMALS = 18
_MONEY_MAX_DIGITS = 18  # before the point


def plain_decimal(text: str) -> bool:
    """A money string in the contract's plain form."""
    return len(text) <= 64 and _DECIMAL_RE.match(text) is not None


def bounded_money(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("money must be finite")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    # Digits as written count, zeros included: 0e1000000 has a million before the point, more
    # than PostgreSQL's numeric (or the driver) can take.
    if (
        abs(value) >= _MONEY_LIMIT
        or -exponent > _MONEY_MAX_DECIMALS
        or len(digits) + exponent > _MONEY_MAX_DIGITS
    ):
        raise ValueError("money out of range (at most 18 digits before and after the point)")
    return value


def _money(value: Any) -> Decimal:
    """A decimal string, or a JSON number already parsed exactly (never a binary float)."""
    return bounded_money(_money_value(value))


def _money_value(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("money must be a decimal string or number, not a boolean")
    if isinstance(value, str):
        if not plain_decimal(value):
            raise ValueError(f"not a plain decimal string: {value[:40]!r}")
        return Decimal(value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    raise ValueError(f"money must be a decimal string, got {type(value).__name__}")


def _instant(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("a timestamp must be an RFC 3339 string")
    return value


# The instants this service can store and reason about: an event's business day, in any
# timezone, and the day after it must be real dates (Python's and PostgreSQL's years run from
# 1 to 9999). An RFC 3339 text such as 0001-01-01T00:30:00+01:00 is year 0 in UTC: refused
# as a schema violation at the door rather than failing later, half-way through a batch.
EARLIEST_INSTANT = datetime(1, 1, 3, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 29, tzinfo=UTC)


def storable_instant(value: datetime) -> bool:
    """Whether an aware instant lies in [EARLIEST_INSTANT, LATEST_INSTANT)."""
    try:
        return EARLIEST_INSTANT <= value < LATEST_INSTANT
    except OverflowError:  # its UTC value is not a date at all (year 0 or 10000)
        return False


def _storable(value: datetime) -> datetime:
    if not storable_instant(value):
        raise ValueError(
            "outside the instants this service can store "
            f"({EARLIEST_INSTANT.date().isoformat()} to {LATEST_INSTANT.date().isoformat()} UTC)"
        )
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "pattern": DECIMAL_PATTERN,
            "description": "exact decimal; a string is preferred",
        }
    ),
]
PositiveMoney = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(gt=0),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "pattern": POSITIVE_DECIMAL_PATTERN,
            "exclusiveMinimum": 0,
            "description": "exact decimal > 0; a string is preferred",
        }
    ),
]
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_instant),
    AfterValidator(_storable),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": RFC3339_PATTERN,
            "description": "RFC 3339 with an offset",
        }
    ),
]


def format_instant(value: datetime) -> str:
    text = value.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


OutTimestamp = Annotated[
    datetime,
    PlainSerializer(format_instant, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
OutAmount = Annotated[
    str,
    StringConstraints(pattern=DECIMAL_PATTERN),
]
