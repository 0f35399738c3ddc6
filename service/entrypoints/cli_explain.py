"""`auto-topup explain CUSTOMER`: why a customer was not topped up, and when it may next be.

Read-only: plain SELECTs in one short read-only REPEATABLE READ transaction (one consistent
picture, no locks taken), then the pure answers of service/domain/explain.py.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from service.adapters.postgres.sql import q
from service.adapters.postgres.store import wallet_from_row
from service.domain import rules
from service.domain.calendar import business_date
from service.domain.explain import (
    balance_at_or_below_threshold,
    customer_timezone,
    next_top_up,
    partner_failure,
)
from service.domain.model import PaymentMethod, Wallet, daily_key

RECENT_BUSINESS_DAYS = 7
DECISION_ROWS = 50
QUERY_TIMEOUT_SECONDS = 10.0

ORIGINS = {
    "finance_app": "the Finance app",
    "online_top_up": "the customer's own online top-up by card",
}

Report = dict[str, Any]


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the database knows of one customer, read in one transaction."""

    wallet: Wallet | None  # None: no wallet row
    funded_customers: int  # wallets naming this one as their partner
    partner: Wallet | None  # the wallet of the partner the settings name, if stored
    keys: list[asyncpg.Record]  # daily keys from `since` on, newest first
    decisions: list[asyncpg.Record]  # decision summary, newest first
    today: date
    timezone: str


async def read_snapshot(
    dsn: str, customer_id: str, now: datetime, policy: rules.Policy
) -> Snapshot:
    t = QUERY_TIMEOUT_SECONDS
    conn = await asyncpg.connect(dsn, timeout=t)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(q("explain_wallet"), customer_id, timeout=t)
            wallet = wallet_from_row(row, frozenset()) if row is not None else None
            timezone = customer_timezone(wallet or Wallet(customer_id), policy)
            today = business_date(now, timezone)
            since = today - timedelta(days=RECENT_BUSINESS_DAYS)
            keys = await conn.fetch(q("explain_daily_keys"), customer_id, since, timeout=t)
            decisions = await conn.fetch(
                q("explain_decisions"), customer_id, DECISION_ROWS, timeout=t
            )
            funded = await conn.fetchval(q("explain_funded_customers"), customer_id, timeout=t)
            partner = None
            partner_id = wallet.settings.partner_id if wallet and wallet.settings else None
            if partner_id is not None:
                prow = await conn.fetchrow(q("explain_wallet"), partner_id, timeout=t)
                partner = wallet_from_row(prow, frozenset()) if prow is not None else None
    finally:
        await conn.close()
    return Snapshot(wallet, int(funded or 0), partner, list(keys), list(decisions), today, timezone)


# --- the report (plain data, the same for --json and for people) ------------------------------


def short_id(stripe_id: str | None) -> str | None:
    """A Stripe id, shortened for display: enough to recognise it, not to use it."""
    if stripe_id is None or len(stripe_id) <= 8:
        return stripe_id
    return stripe_id[:8] + "…"


def _settings(wallet: Wallet, policy: rules.Policy) -> Report | None:
    s = wallet.settings
    if s is None:
        return None
    card = wallet.card
    return {
        "payment_method": s.payment_method.value,
        "auto_trigger": s.auto_trigger,
        "trigger_amount": s.trigger_amount,
        "limit_threshold": s.limit_threshold,
        "currency": s.currency,
        "timezone": s.timezone,
        "effective_timezone": customer_timezone(wallet, policy),
        "partner_id": s.partner_id,
        "card": None
        if card is None
        else {
            "stripe_customer_id": short_id(card.stripe_customer_id),
            "stripe_payment_method_id": short_id(card.stripe_payment_method_id),
        },
        "stripe_paused": wallet.stripe_paused,
        "origin": s.origin.value,
        "origin_label": ORIGINS.get(s.origin.value, s.origin.value),
        "occurred_at": s.occurred_at,
        "event_id": s.event_id,
        "version": s.version,
    }


def _balance(wallet: Wallet, now: datetime, policy: rules.Policy) -> Report | None:
    b = wallet.balance
    if b is None:
        return None
    return {
        "amount": b.amount,
        "currency": b.currency,
        "occurred_at": b.occurred_at,
        "sequence": b.sequence,
        "event_id": b.event_id,
        "at_or_below_threshold": balance_at_or_below_threshold(wallet, now, policy),
    }


def _as_partner(wallet: Wallet, funded_customers: int) -> Report | None:
    if funded_customers == 0 and not wallet.credits_out:
        return None
    issued = sum((c.amount for c in wallet.credits_out), Decimal(0))
    return {
        "funded_customers": funded_customers,
        "credit_issued_since_balance": issued,
        "credits_out": [{"issued_at": c.issued_at, "amount": c.amount} for c in wallet.credits_out],
        "available_funds": rules.available_funds(wallet),
        "currency": wallet.balance.currency if wallet.balance else None,
    }


def _funding_partner(wallet: Wallet, partner: Wallet | None, now: datetime) -> Report | None:
    s = wallet.settings
    if s is None or s.payment_method is not PaymentMethod.MASTER_ACCOUNT or s.partner_id is None:
        return None
    b = partner.balance if partner else None
    return {
        "partner_id": s.partner_id,
        "balance": b.amount if b else None,
        "currency": b.currency if b else None,
        "balance_occurred_at": b.occurred_at if b else None,
        "available_funds": rules.available_funds(partner) if partner else None,
        # What a top-up made now would come to: None (credit issued) or top-up-failed's reason.
        "failure_if_due_now": partner_failure(wallet, partner, now),
    }


def _key(row: asyncpg.Record) -> Report:
    return {
        "business_date": row["business_date"],
        "daily_key": daily_key(row["customer_id"], row["business_date"]),
        "payment_method": row["payment_method"],
        "amount": row["amount"],
        "currency": row["currency"],
        "phase": row["phase"],
        "result": row["result"],
        "reason": row["reason"],
        "detail": row["detail"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"],
        "stripe_payment_intent_id": row["stripe_payment_intent_id"],
        "trigger_event_id": row["trigger_event_id"],
        "balance_at_trigger": row["balance_at_trigger"],
        "limit_threshold": row["limit_threshold"],
        "created_at": row["created_at"],
    }


def _decision(row: asyncpg.Record) -> Report:
    return {
        "outcome": row["outcome"],
        "reason": row["reason"] or None,
        "last_at": row["last_at"],
        "times": row["times"],
        "method": row["method"],
        "business_date": row["business_date"],
        "last_event_id": row["last_event_id"],
        "source": f"{row['last_topic']}[{row['last_partition']}]@{row['last_offset']}",
        "topic": row["last_topic"],
        "partition": row["last_partition"],
        "offset": row["last_offset"],
        "detail": row["detail"] or None,
    }


def build_report(
    customer_id: str, snap: Snapshot, now: datetime, policy: rules.Policy
) -> Report | None:
    """Everything explain shows, as plain data; None for a customer the database never saw."""
    if snap.wallet is None and not snap.keys and not snap.decisions:
        return None
    taken = frozenset(k["business_date"] for k in snap.keys)
    wallet = snap.wallet or Wallet(customer_id)
    nxt = next_top_up(wallet, taken, now, policy)
    today_key = next((k for k in snap.keys if k["business_date"] == snap.today), None)
    return {
        "customer_id": customer_id,
        "now": now,
        "settings": _settings(wallet, policy),
        "balance": _balance(wallet, now, policy),
        "as_partner": _as_partner(wallet, snap.funded_customers),
        "funding_partner": _funding_partner(wallet, snap.partner, now),
        "today": {
            "business_date": snap.today,
            "timezone": snap.timezone,
            "timezone_is_default": wallet.settings is None or wallet.settings.timezone is None,
            "daily_key": daily_key(customer_id, snap.today),
            "key": None if today_key is None else _key(today_key),
        },
        "recent_daily_keys": [_key(k) for k in snap.keys],
        "next_top_up": {
            "code": nxt.code.value,
            "sentence": nxt.sentence,
            "not_before": nxt.not_before,
            "next_business_date": nxt.next_business_date,
            "business_date": nxt.business_date,
            "timezone": nxt.timezone,
        },
        "decisions": [_decision(d) for d in snap.decisions],
    }


def _jsonable(v: object) -> str:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def to_json(report: Report) -> str:
    return json.dumps(report, default=_jsonable, ensure_ascii=False, indent=2)


# --- rendering for people ---------------------------------------------------------------------


def _text(v: object) -> Text:
    """A value as plain text (never parsed as rich markup: ids and details come from outside)."""
    if v is None:
        return Text("—", style="dim")
    if isinstance(v, bool):
        return Text("yes" if v else "no")
    if isinstance(v, datetime):
        return Text(v.isoformat())
    if isinstance(v, date):
        return Text(v.isoformat())
    return Text(str(v))


def _fields(rows: list[tuple[str, object]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, v in rows:
        grid.add_row(name, v if isinstance(v, Text) else _text(v))
    return grid


def _money(amount: object, currency: object) -> Text:
    return _text(None) if amount is None else Text(f"{amount} {currency}")


def _settings_panel(report: Report) -> Panel:
    s = report["settings"]
    if s is None:
        return Panel(Text("No settings received."), title="Settings", title_align="left")
    tz = Text(s["effective_timezone"])
    if s["timezone"] is None:
        tz.append(" (the default: the settings name no timezone)", style="dim")
    card = s["card"]
    return Panel(
        _fields(
            [
                ("payment method", s["payment_method"]),
                ("auto-trigger", Text("on", "green") if s["auto_trigger"] else Text("off", "red")),
                ("trigger amount", _money(s["trigger_amount"], s["currency"])),
                ("limit threshold", _money(s["limit_threshold"], s["currency"])),
                ("currency", s["currency"]),
                ("timezone", tz),
                ("partner_id", s["partner_id"]),
                (
                    "card on file",
                    None
                    if card is None
                    else f"customer {card['stripe_customer_id']}, "
                    f"payment method {card['stripe_payment_method_id']}",
                ),
                ("Stripe paused", Text("yes", "red") if s["stripe_paused"] else Text("no")),
                ("set by", Text(f"{s['origin']} ({s['origin_label']})")),
                ("occurred_at", s["occurred_at"]),
                ("event_id", s["event_id"]),
                ("version", s["version"]),
            ]
        ),
        title="Settings",
        title_align="left",
    )


def _balance_panel(report: Report) -> Panel:
    b = report["balance"]
    parts: list[RenderableType] = []
    if b is None:
        parts.append(Text("No balance received."))
    else:
        low = b["at_or_below_threshold"]
        verdict = (
            _text(None)
            if low is None
            else Text("yes", "yellow")
            if low
            else Text("no (above the threshold)")
        )
        parts.append(
            _fields(
                [
                    ("balance", _money(b["amount"], b["currency"])),
                    ("occurred_at", b["occurred_at"]),
                    ("sequence", b["sequence"]),
                    ("event_id", b["event_id"]),
                    ("at/below threshold", verdict),
                ]
            )
        )
    p = report["as_partner"]
    if p is not None:
        parts.append(Text("\nAs a partner (master account)", style="bold"))
        parts.append(
            _fields(
                [
                    ("funds customers", p["funded_customers"]),
                    (
                        "credit issued since",
                        Text(
                            f"{p['credit_issued_since_balance']} {p['currency'] or ''} "
                            f"({len(p['credits_out'])} credits)"
                        ),
                    ),
                    ("available funds", _money(p["available_funds"], p["currency"])),
                ]
            )
        )
    f = report["funding_partner"]
    if f is not None:
        parts.append(Text(f"\nPaid from partner {f['partner_id']}", style="bold"))
        parts.append(
            _fields(
                [
                    ("partner balance", _money(f["balance"], f["currency"])),
                    ("available funds", _money(f["available_funds"], f["currency"])),
                    (
                        "a top-up now would",
                        Text("issue the credit", "green")
                        if f["failure_if_due_now"] is None
                        else Text(f"fail: {f['failure_if_due_now']}", "red"),
                    ),
                ]
            )
        )
    return Panel(Group(*parts), title="Last known balance", title_align="left")


def _keys_table(keys: list[Report]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("day", no_wrap=True)
    table.add_column("method", no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("phase / result (reason)", overflow="fold")
    table.add_column("tries", justify="right")
    for k in keys:
        state = Text(f"{k['phase']} / {k['result'] or '—'}")
        if k["reason"]:
            state.append(f" ({k['reason']})")
        table.add_row(
            _text(k["business_date"]),
            _text(k["payment_method"]),
            _money(k["amount"], k["currency"]),
            state,
            _text(k["attempts"]),
        )
    return table


def _today_panel(report: Report) -> Panel:
    t = report["today"]
    tz = Text(t["timezone"])
    if t["timezone_is_default"]:
        tz.append(" (default)", style="dim")
    rows: list[tuple[str, object]] = [
        ("business date", t["business_date"]),
        ("timezone", tz),
        ("daily key", t["daily_key"]),
    ]
    k = t["key"]
    if k is None:
        rows.append(("state", Text("free (no top-up attempted today)", "green")))
    else:
        rows += [
            ("state", Text(f"{k['phase']} / {k['result'] or '—'}", "yellow")),
            ("method", k["payment_method"]),
            ("amount", _money(k["amount"], k["currency"])),
            ("reason", k["reason"]),
            ("detail", k["detail"]),
            ("attempts", k["attempts"]),
        ]
        if k["payment_method"] == PaymentMethod.STRIPE.value:
            rows += [
                ("next_attempt_at", k["next_attempt_at"]),
                ("stripe_payment_intent_id", k["stripe_payment_intent_id"]),
            ]
        rows += [
            ("trigger event", k["trigger_event_id"]),
            ("balance at trigger", _money(k["balance_at_trigger"], k["currency"])),
        ]
    parts: list[RenderableType] = [_fields(rows)]
    recent = report["recent_daily_keys"]
    parts.append(Text(f"\nDaily keys of the last {RECENT_BUSINESS_DAYS} business days", "bold"))
    parts.append(_keys_table(recent) if recent else Text("none", style="dim"))
    return Panel(Group(*parts), title="Today", title_align="left")


def _decisions_panel(report: Report) -> Panel:
    decisions = report["decisions"]
    if not decisions:
        return Panel(
            Text("No decisions recorded."),
            title="Last decisions (newest first)",
            title_align="left",
        )
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, expand=True)
    table.add_column("outcome / reason", overflow="fold", ratio=1)
    table.add_column("times", justify="right", no_wrap=True)
    table.add_column("decided at · method, business date · event · source · detail", ratio=3)
    for d in decisions:
        outcome = Text(d["outcome"], style="bold")
        if d["reason"]:
            outcome.append(f"\n{d['reason']}")
        what = Text(overflow="fold")
        what.append(d["last_at"].isoformat())
        what.append(f"\n{d['method'] or '—'}")
        if d["business_date"] is not None:
            what.append(f" · {d['business_date'].isoformat()}")
        what.append(f"\nevent {d['last_event_id'] or '—'}")
        what.append(f"\nfrom {d['source']}", style="dim")
        if d["detail"]:
            what.append(f"\n{d['detail']}")
        table.add_row(outcome, _text(d["times"]), what)
    return Panel(table, title="Last decisions (newest first)", title_align="left")


def _next_panel(report: Report) -> Panel:
    n = report["next_top_up"]
    body = Text(n["code"], style="bold")
    body.append(f"\n{n['sentence']}")
    return Panel(body, title="Next top-up", title_align="left", border_style="cyan")


def render(report: Report, console: Console) -> None:
    console.print(
        Text.assemble(
            ("Customer ", "bold"),
            (report["customer_id"], "bold cyan"),
            (f"   (as of {report['now'].isoformat()})", "dim"),
        )
    )
    for panel in (
        _settings_panel(report),
        _balance_panel(report),
        _today_panel(report),
        _decisions_panel(report),
        _next_panel(report),
    ):
        console.print(panel)


# --- the command ------------------------------------------------------------------------------


def explain(
    customer: Annotated[
        str, typer.Argument(help="The customer_id (a partner's id works too).", show_default=False)
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object, for scripts.")
    ] = False,
) -> None:
    """Why a customer was not topped up, and when it may next be (read-only)."""
    from service.entrypoints.cli import load_settings  # cli.py imports this module

    settings = load_settings()
    policy = settings.policy
    now = settings.clock()()  # the service's clock (AUTO_TOPUP_CLOCK_OFFSET_SECONDS)
    try:
        snap = asyncio.run(read_snapshot(settings.dsn, customer, now, policy))
    except asyncpg.UndefinedTableError as exc:
        typer.echo(f"explain: {exc}: run `auto-topup migrate` first", err=True)
        raise typer.Exit(2) from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        typer.echo(f"explain: cannot read PostgreSQL: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    report = build_report(customer, snap, now, policy)
    if report is None:
        typer.echo(
            f"unknown customer {customer!r}: no wallet, daily key or decision is recorded "
            "for this id",
            err=True,
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(to_json(report))
    else:
        render(report, Console(highlight=False))
