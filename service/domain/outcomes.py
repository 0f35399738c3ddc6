"""What the rules take (the policy) and give (an outcome: the new wallet, its status, the
decision and what it needs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from service.domain.model import TopUp, Wallet
from service.domain.notices import Notice
from service.domain.rails import DEFAULT_RAILS, Rails
from service.domain.values import value


@dataclass(frozen=True, slots=True)
class Policy:
    default_timezone: str = "UTC"
    future_skew: timedelta = timedelta(minutes=5)
    # Events whose business date is older than `today - old_day_window_days` trigger nothing.
    old_day_window_days: int = 1
    # A partner credit that no balance event of the partner's wallet names in `caused_by`
    # stops being reserved after this long (measured on this service's clock).
    credit_hold: timedelta = timedelta(hours=48)
    # The payment rails, by the method they serve (what a due top-up does).
    rails: Rails = field(default=DEFAULT_RAILS)


class Status(StrEnum):
    APPLIED = "applied"  # state changed (and maybe a top-up decided)
    STALE = "stale"  # older than, or the same as, what we know: no change
    REJECTED = "rejected"  # can never be applied: dead-lettered


class Decision(StrEnum):
    TRIGGERED = "triggered"
    SUPPRESSED = "suppressed"  # due, but today's daily key is taken
    BLOCKED = "blocked"  # would be due, but a rule stops it
    NOT_DUE = "not_due"


@value
class Outcome:
    wallet: Wallet
    status: Status
    decision: Decision = Decision.NOT_DUE
    reason: str | None = None  # reject reason, or why not triggered
    detail: str = ""
    topup: TopUp | None = None
    notices: tuple[Notice, ...] = ()
