"""Retention's pure parts: the settings and their errors, each horizon, the backlog's age, and
the argument that a pruned daily key can never be needed (against the real old-day guard)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from service.config import DAILY_KEY_MARGIN_DAYS, Settings, describe_error
from service.domain.calendar import business_date
from service.domain.model import PaymentMethod, Wallet
from service.domain.rules import Decision, Policy, apply_balance, apply_settings
from service.service_layer.retention import (
    CHARGE_AUDIT,
    DAILY_KEYS,
    DECISION_SUMMARY,
    OUTBOX_DEAD_LETTERS,
    OUTBOX_EVENTS,
    TARGETS,
    Retention,
)
from tests.factories import balance
from tests.factories import settings as settings_event

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def load(**env: str) -> Settings:
    return Settings(**{"DATABASE_URL": "postgresql://u@h/db", **env})  # type: ignore[arg-type]


def test_defaults_work_and_are_documented_ones() -> None:
    retention = Retention.from_settings(load())
    assert retention == Retention()
    assert (retention.daily_keys_days, retention.outbox_events_days) == (35, 7)
    assert (retention.dead_letters_days, retention.decision_summary_days) == (21, 400)
    assert retention.audit_days == 0  # audit rows are kept for ever
    assert retention.batch_size == 1000
    assert load().retention_interval_seconds == 600


def test_settings_are_read_from_the_environment() -> None:
    retention = Retention.from_settings(
        load(
            AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS="90",
            AUTO_TOPUP_RETENTION_OUTBOX_DAYS="1",
            AUTO_TOPUP_RETENTION_DEAD_LETTERS_DAYS="30",
            AUTO_TOPUP_RETENTION_DECISION_SUMMARY_DAYS="0",
            AUTO_TOPUP_RETENTION_AUDIT_DAYS="2557",
            AUTO_TOPUP_RETENTION_BATCH_SIZE="50",
        )
    )
    assert retention == Retention(90, 1, 30, 0, 2557, 50)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS": "3"},
            "configuration error: AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS: Value error, must be 0 "
            "(keep for ever) or at least AUTO_TOPUP_OLD_DAY_WINDOW_DAYS + 3 (4)",
        ),
        (
            {"AUTO_TOPUP_OLD_DAY_WINDOW_DAYS": "30", "AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS": "32"},
            "at least AUTO_TOPUP_OLD_DAY_WINDOW_DAYS + 3 (33)",
        ),
        ({"AUTO_TOPUP_RETENTION_OUTBOX_DAYS": "-1"}, "AUTO_TOPUP_RETENTION_OUTBOX_DAYS"),
        ({"AUTO_TOPUP_RETENTION_DEAD_LETTERS_DAYS": "two weeks"}, "DEAD_LETTERS_DAYS"),
        ({"AUTO_TOPUP_RETENTION_BATCH_SIZE": "0"}, "AUTO_TOPUP_RETENTION_BATCH_SIZE"),
        ({"AUTO_TOPUP_RETENTION_INTERVAL_SECONDS": "-5"}, "AUTO_TOPUP_RETENTION_INTERVAL_SECONDS"),
        ({"AUTO_TOPUP_RETENTION_INTERVAL_SECONDS": "inf"}, "AUTO_TOPUP_RETENTION_INTERVAL_SECONDS"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load(**env)
    assert problem in describe_error(caught.value)


def test_zero_keeps_daily_keys_for_ever_and_the_minimum_is_allowed() -> None:
    assert load(AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS="0").retention_daily_keys_days == 0
    assert load(AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS="4").retention_daily_keys_days == 4
    assert (
        load(
            AUTO_TOPUP_OLD_DAY_WINDOW_DAYS="0", AUTO_TOPUP_RETENTION_DAILY_KEYS_DAYS="3"
        ).retention_daily_keys_days
        == 3
    )


def test_horizons() -> None:
    horizons = Retention(audit_days=400).horizons(NOW)
    assert horizons[DAILY_KEYS] == datetime(2026, 2, 3, tzinfo=UTC)  # first business date kept
    assert horizons[OUTBOX_EVENTS] == NOW - timedelta(days=7)
    assert horizons[OUTBOX_DEAD_LETTERS] == NOW - timedelta(days=21)
    assert horizons[DECISION_SUMMARY] == NOW - timedelta(days=400)
    assert horizons[CHARGE_AUDIT] == NOW - timedelta(days=400)
    assert Retention().horizons(NOW)[CHARGE_AUDIT] is None  # kept for ever
    assert list(horizons) == list(TARGETS)
    # Daily keys by the UTC date of the instant, whatever offset it is written in.
    kiritimati = NOW.astimezone(datetime.fromisoformat("2026-01-01T00:00+14:00").tzinfo)
    assert Retention().horizons(kiritimati)[DAILY_KEYS] == horizons[DAILY_KEYS]


def test_how_long_the_oldest_prunable_row_has_waited() -> None:
    retention = Retention()
    assert retention.overdue_seconds(OUTBOX_EVENTS, None, NOW) == 0
    assert retention.overdue_seconds(OUTBOX_EVENTS, NOW - timedelta(days=8), NOW) == 86400
    assert retention.overdue_seconds(OUTBOX_EVENTS, NOW - timedelta(days=6), NOW) == 0
    # a key of 2026-02-02 may go from 2026-03-10 00:00 UTC on (35 days after 2026-02-03)
    assert retention.overdue_seconds(DAILY_KEYS, date(2026, 2, 2), NOW) == 12 * 3600
    assert retention.overdue_seconds(DAILY_KEYS, date(2026, 2, 3), NOW) == 0
    assert retention.overdue_seconds(CHARGE_AUDIT, NOW - timedelta(days=9999), NOW) == 0


# The argument of the daily keys' horizon, against the real rules: an event of a business date
# that the shortest allowed retention prunes can never trigger, in any time zone, at any time
# of the day (the old-day guard refuses it before the daily key is looked at).
ZONES = (
    "Etc/GMT+12",
    "Pacific/Pago_Pago",
    "America/Los_Angeles",
    "UTC",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "Etc/GMT-14",
)


def _latest_event_of_newest_pruned_date(
    retention: Retention, now: datetime, zone: str, policy: Policy
) -> tuple[str | None, Decision]:
    """A due balance dated at the last instant (in `zone`) of the newest business date that
    `retention` prunes at `now`: what the rules decide for it."""
    first_kept = retention.horizons(now)[DAILY_KEYS]
    assert first_kept is not None
    newest_pruned = first_kept.date() - timedelta(days=1)
    at = datetime.combine(newest_pruned + timedelta(days=1), datetime.min.time(), UTC)
    while business_date(at, zone) > newest_pruned:
        at -= timedelta(minutes=30)
    assert business_date(at, zone) == newest_pruned
    wallet = apply_settings(
        Wallet("c"),
        settings_event(
            "c", method=PaymentMethod.CHEQUE_TT, timezone=zone, at=at - timedelta(hours=1)
        ),
        now,
        policy,
    ).wallet
    outcome = apply_balance(wallet, balance("c", "1.00", at=at), now, policy)
    return outcome.reason, outcome.decision


@pytest.mark.parametrize("window", [0, 1, 2, 7])
@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("hour", [0, 1, 11, 12, 13, 23])
def test_no_event_can_act_on_a_pruned_business_date(window: int, zone: str, hour: int) -> None:
    policy = Policy(old_day_window_days=window)
    now = datetime(2026, 3, 10, hour, 30, tzinfo=UTC)
    retention = Retention(daily_keys_days=window + DAILY_KEY_MARGIN_DAYS)
    assert _latest_event_of_newest_pruned_date(retention, now, zone, policy) == (
        "old_business_date",
        Decision.BLOCKED,
    )


def test_a_horizon_of_the_window_alone_would_prune_a_key_still_needed() -> None:
    """Why the margin: at 00:30 UTC it is still yesterday at UTC-12, and yesterday's
    yesterday is inside a one-day window there."""
    policy = Policy(old_day_window_days=1)
    now = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    too_short = Retention(daily_keys_days=1)
    assert _latest_event_of_newest_pruned_date(too_short, now, "Etc/GMT+12", policy) == (
        None,
        Decision.TRIGGERED,
    )
