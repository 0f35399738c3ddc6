"""`auto-topup charges`: the Stripe charges not settled yet, and settling one by hand.

Arguments in, text out: the reads and writes are in service/adapters/postgres/charge_admin.py.
Exit codes: 0 done; 1 not found, not resolvable, or PostgreSQL unreachable; 2 bad usage.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from service.adapters.postgres.charge_admin import (
    RESOLVED_FAILED_DETAIL,
    ChargeNotFound,
    ChargeNotResolvable,
    OpenCharge,
    Resolution,
    open_charges,
    resolve,
)
from service.entrypoints.cli_support import console as _out
from service.entrypoints.cli_support import settings as _settings
from service.entrypoints.cli_support import with_database as _with_database
from service.service_layer.payments import ChargeResult, ChargeStatus

if TYPE_CHECKING:
    pass

T = TypeVar("T")

DEFAULT_LIMIT = 1000
# What top-up-failed says when an operator settles a charge as failed without --reason.
DEFAULT_FAILED_REASON = "stripe_charge_unresolved"
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PAYMENT_INTENT = re.compile(r"^pi_[A-Za-z0-9_]{1,250}$")

charges = typer.Typer(
    name="charges",
    help="The Stripe charges not settled yet, and settling one by hand after review.",
    no_args_is_help=True,
    add_completion=False,
)


class ChargesError(Exception):
    """A failure told to the operator in one line (exit code 1)."""


# --- helpers ----------------------------------------------------------------------------------


def parse_daily_key(text: str) -> tuple[str, date]:
    """`<customer_id>/<YYYY-MM-DD>`, as `charges list` and the events' idempotency_key show."""
    customer_id, slash, day = text.rpartition("/")
    try:
        if not slash or not customer_id:
            raise ValueError
        return customer_id, date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a daily key: <customer_id>/<YYYY-MM-DD>", param_hint="DAILY_KEY"
        ) from None


def _age(now: datetime, since: datetime | None) -> str:
    if since is None:
        return "-"
    seconds = max(int((now - since).total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"


def _instant(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _jsonable(charge: OpenCharge, now: datetime) -> dict[str, Any]:
    def iso(at: datetime | None) -> str | None:
        return None if at is None else at.isoformat()

    started = charge.first_attempt_at
    return {
        "daily_key": charge.daily_key,
        "customer_id": charge.customer_id,
        "business_date": charge.business_date.isoformat(),
        "phase": charge.phase,
        "amount": str(charge.amount),
        "currency": charge.currency,
        "attempts": charge.attempts,
        "claimed_at": iso(charge.claimed_at),
        "first_attempt_at": iso(started),
        "key_age_seconds": None if started is None else (now - started).total_seconds(),
        "looked_up_at": iso(charge.looked_up_at),
        "next_attempt_at": iso(charge.next_attempt_at),
        "stripe_payment_intent_id": charge.payment_intent_id,
        "detail": charge.detail,
    }


def _table(rows: list[OpenCharge], now: datetime) -> Table:
    table = Table()
    for name in (
        "daily key",
        "phase",
        "amount",
        "attempts",
        "key age",
        "first attempt",
        "looked up",
        "next attempt",
        "PaymentIntent",
        "detail",
    ):
        table.add_column(name, no_wrap=name != "detail")
    for c in rows:
        table.add_row(
            c.daily_key,
            Text(c.phase, style="bold red" if c.phase == "needs_review" else ""),
            f"{c.amount} {c.currency}",
            str(c.attempts),
            _age(now, c.first_attempt_at),
            _instant(c.first_attempt_at),
            _instant(c.looked_up_at),
            _instant(c.next_attempt_at),
            c.payment_intent_id or "-",
            c.detail or "",
        )
    return table


# --- the commands -----------------------------------------------------------------------------


LIST_HELP = (
    "The Stripe charges not settled yet: in the charger's hands (claimed, charging) or "
    "waiting for an operator (needs_review). Read-only."
)
RESOLVE_HELP = (
    "Settle one charge in needs_review by hand: publishes credit-issued (--succeeded) or "
    "top-up-failed (--failed) under the daily key's own event id, and records who, when and "
    "why in charge_audit. With --failed, a top-up with a fallback method goes on with it, as "
    "the charger would: its event (credit-issued from the partner, invoice-requested, or one "
    "top-up-failed naming both failures) is published instead."
)


@charges.command("list", help=LIST_HELP)
def list_charges(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per charge (for scripts).")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Show at most N, oldest first.")
    ] = DEFAULT_LIMIT,
) -> None:
    settings = _settings()
    now = settings.clock()()  # the service's clock (AUTO_TOPUP_CLOCK_OFFSET_SECONDS)
    rows = _with_database(settings.dsn, lambda conn: open_charges(conn, limit))
    if as_json:
        for charge in rows:
            typer.echo(json.dumps(_jsonable(charge, now), ensure_ascii=False))
        return
    out = _out()
    if not rows:
        out.print(Text("no Stripe charge is waiting: every one is settled"))
        return
    out.print(_table(rows, now))
    review = sum(c.phase == "needs_review" for c in rows)
    out.print(
        Text(
            f"{len(rows)} unsettled: {review} need review "
            "(`auto-topup charges resolve DAILY_KEY ...`), "
            f"{len(rows) - review} in the charger's hands"
        )
    )


DailyKeyArg = Annotated[
    str,
    typer.Argument(
        help="<customer_id>/<YYYY-MM-DD>, as `charges list` shows it.", show_default=False
    ),
]
ByOption = Annotated[
    str, typer.Option("--by", help="Who decides (kept in charge_audit).", show_default=False)
]
WhyOption = Annotated[
    str,
    typer.Option("--why", help="Why, e.g. what the Stripe dashboard shows.", show_default=False),
]
SucceededOption = Annotated[
    str | None,
    typer.Option(
        "--succeeded",
        metavar="PI_ID",
        help="The charge was made: the PaymentIntent that succeeded (credit-issued).",
    ),
]
FailedOption = Annotated[bool, typer.Option("--failed", help="No charge was made (top-up-failed).")]
ReasonOption = Annotated[
    str | None,
    typer.Option(
        "--reason",
        help=f"top-up-failed's reason with --failed (default {DEFAULT_FAILED_REASON}).",
    ),
]


def _decision(
    succeeded: str | None, failed: bool, reason: str | None, by: str, why: str
) -> ChargeResult:
    """What the operator decided, once the options are checked."""
    if (succeeded is None) == (not failed):
        raise typer.BadParameter("give exactly one of --succeeded PI_ID and --failed")
    if reason is not None and not failed:
        raise typer.BadParameter("--reason goes with --failed", param_hint="--reason")
    if reason is not None and not _REASON.match(reason):
        raise typer.BadParameter("a snake_case code, e.g. card_declined", param_hint="--reason")
    if succeeded is not None and not _PAYMENT_INTENT.match(succeeded):
        raise typer.BadParameter("a PaymentIntent id (pi_...)", param_hint="--succeeded")
    if not by.strip():
        raise typer.BadParameter("must not be empty", param_hint="--by")
    if not why.strip():
        raise typer.BadParameter("must not be empty", param_hint="--why")
    if succeeded is not None:
        return ChargeResult(ChargeStatus.SUCCEEDED, succeeded)
    return ChargeResult(
        ChargeStatus.FAILED, None, reason or DEFAULT_FAILED_REASON, RESOLVED_FAILED_DETAIL
    )


def _not_resolvable(exc: ChargeNotResolvable) -> NoReturn:
    hint = (
        "it is settled already"
        if exc.phase == "done"
        else "the charger still works on it; it reaches needs_review past the Stripe horizon"
    )
    typer.echo(f"error: {exc}: {hint}", err=True)
    raise typer.Exit(1) from None


@charges.command("resolve", help=RESOLVE_HELP)
def resolve_charge(
    daily_key: DailyKeyArg,
    by: ByOption,
    why: WhyOption,
    succeeded: SucceededOption = None,
    failed: FailedOption = False,
    reason: ReasonOption = None,
) -> None:
    customer_id, business_date = parse_daily_key(daily_key)
    decision = _decision(succeeded, failed, reason, by, why)
    settings = _settings()
    now = settings.clock()()  # the service's clock (AUTO_TOPUP_CLOCK_OFFSET_SECONDS)
    try:
        done: Resolution = _with_database(
            settings.dsn,
            lambda conn: resolve(
                conn,
                customer_id,
                business_date,
                decision,
                by=by.strip(),
                why=why.strip(),
                now=now,
                topics=settings.topics,
                credit_hold=settings.policy.credit_hold,
            ),
        )
    except ChargeNotFound:
        typer.echo(f"error: no daily key {daily_key}", err=True)
        raise typer.Exit(1) from None
    except ChargeNotResolvable as exc:
        _not_resolvable(exc)
    what = done.result if done.reason is None else f"{done.result} ({done.reason})"
    typer.echo(
        f"resolved {done.daily_key}: {done.old_phase} -> {what}; queued {done.topic} event "
        f"{done.event_id} (the running service publishes it); audit row {done.audit_id}"
    )
