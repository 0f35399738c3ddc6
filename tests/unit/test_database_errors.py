"""What each database failure means (service/adapters/postgres/errors.py), DATABASE_URL's
form, and the money PostgreSQL could not store, rejected at the door."""

from __future__ import annotations

import json
from decimal import Decimal

import asyncpg
import pytest
from asyncpg import exceptions as pg
from pydantic import ValidationError

from service.adapters.postgres.errors import (
    Kind,
    ReadOnlyConnection,
    classify,
    is_misconfiguration,
    is_transient,
    problem_line,
)
from service.config import Settings, describe_error
from service.contract.codec import Invalid, decode_balance, decode_settings
from service.contract.types import bounded_money

TRANSIENT = [
    pg.QueryCanceledError("canceling statement due to statement timeout"),
    pg.LockNotAvailableError("canceling statement due to lock timeout"),
    pg.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only transaction"),
    pg.SerializationError("could not serialize access"),
    pg.DeadlockDetectedError("deadlock detected"),
    pg.AdminShutdownError("terminating connection due to administrator command"),
    pg.CannotConnectNowError("the database system is starting up"),
    pg.TooManyConnectionsError("too many clients"),
    pg.IdleInTransactionSessionTimeoutError("idle in transaction"),
    pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    pg.InvalidCachedStatementError("cached statement plan is invalid"),
    asyncpg.InterfaceError("pool is closed"),
    ReadOnlyConnection("default_transaction_read_only is on"),
    ConnectionRefusedError(111, "Connect call failed"),
    TimeoutError(),
]
CONFIGURATION = [
    pg.InvalidPasswordError('password authentication failed for user "x"'),
    pg.InvalidAuthorizationSpecificationError('role "x" does not exist'),
    pg.InvalidCatalogNameError('database "x" does not exist'),
    pg.InsufficientPrivilegeError("permission denied for table wallets"),
    pg.ClientConfigurationError("invalid DSN: scheme is expected to be ..."),
]
DATA = [
    asyncpg.DataError("invalid input for query argument $1 (exponent is too large)"),
    pg.RaiseError("refusing poison"),
    pg.UniqueViolationError("duplicate key"),
    pg.NumericValueOutOfRangeError("value overflows numeric format"),
    pg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
    pg.ConfigurationLimitExceededError("out of shared memory"),  # a smaller batch goes through
    ValueError("a bug"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_what_goes_away_by_itself_is_waited_for(exc: BaseException) -> None:
    assert classify(exc) is Kind.TRANSIENT
    assert is_transient(exc)
    assert not is_misconfiguration(exc)
    assert problem_line(exc)[1] == 1


@pytest.mark.parametrize("exc", CONFIGURATION, ids=lambda e: type(e).__name__)
def test_a_misconfiguration_stops_start_up_and_waits_while_running(exc: BaseException) -> None:
    assert classify(exc) is Kind.CONFIGURATION
    assert is_misconfiguration(exc)
    assert is_transient(exc)  # a running batch waits for the operator; never dead-lettered
    line, code = problem_line(exc)
    assert code == 2
    assert line.startswith("configuration error: DATABASE_URL: ")


@pytest.mark.parametrize("exc", DATA, ids=lambda e: type(e).__name__)
def test_what_comes_from_the_records_is_isolated(exc: BaseException) -> None:
    assert classify(exc) is Kind.DATA
    assert not is_transient(exc)
    assert problem_line(exc)[1] == 1


def test_a_problem_is_one_line() -> None:
    line, _ = problem_line(pg.RaiseError("first\nsecond\n  third"))
    assert line == "error: PostgreSQL: RaiseError: first second third"


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p@db:5432/x", "postgres://u@db/x", "postgresql://h1:5432,h2:5433/x"],
)
def test_database_url_accepts_what_asyncpg_accepts(url: str) -> None:
    assert Settings.model_validate({"DATABASE_URL": url}).dsn == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://u:p@db/x",
        "postgresql+psycopg2://u@db/x",
        "mysql://u@db/x",
        "db:5432/x",
    ],
)
def test_database_url_refuses_the_rest_naming_it(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"DATABASE_URL": url})
    [line] = describe_error(caught.value).splitlines()
    assert line.startswith("configuration error: DATABASE_URL: ")
    assert "postgresql:// or postgres://" in line


# --- money PostgreSQL could not store --------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["0e1000000", "0E+18", "-0e40000", "0e999999999999", "1e-19", "0e-1000000"]
)
def test_a_number_postgresql_cannot_store_is_out_of_range(number: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        bounded_money(Decimal(number))


@pytest.mark.parametrize(
    "number", ["0e17", "1e17", "9.99e17", "-999999999999999999", "1e-18", "0e-18", "12.5e1"]
)
def test_numbers_within_18_digits_either_side_are_money(number: str) -> None:
    assert bounded_money(Decimal(number)) == Decimal(number)


def _balance(balance: str) -> bytes:
    body = {
        "event_id": "e-1",
        "occurred_at": "2026-11-25T12:00:00Z",
        "customer_id": "c-1",
        "currency": "USD",
        "balance": "__n__",
    }
    return json.dumps(body).replace('"__n__"', balance).encode()


def _settings(field: str, number: str) -> bytes:
    body = {
        "event_id": "e-1",
        "occurred_at": "2026-11-25T12:00:00Z",
        "customer_id": "c-1",
        "origin": "finance_app",
        "payment_method": "cheque_tt",
        "auto_trigger": True,
        "trigger_amount": "100.00",
        "limit_threshold": "10.00",
        "currency": "USD",
        field: "__n__",
    }
    return json.dumps(body).replace('"__n__"', number).encode()


@pytest.mark.parametrize("number", ["0e1000000", "-0E+131073", "0e18"])
def test_such_numbers_are_a_schema_violation_at_the_door(number: str) -> None:
    for decoded in (
        decode_balance(_balance(number), b"c-1"),
        decode_settings(_settings("limit_threshold", number), b"c-1"),
        decode_settings(_settings("trigger_amount", number), b"c-1"),
    ):
        assert isinstance(decoded, Invalid)
        assert decoded.reason == "schema_violation"


def test_exponents_within_range_are_still_accepted() -> None:
    decoded = decode_balance(_balance("1.5e2"), b"c-1")
    assert not isinstance(decoded, Invalid)
    assert decoded.balance == Decimal("150")
