"""`auto-topup explain CUSTOMER`: why a customer was not topped up, and when it may next be.

Read-only: plain SELECTs in one short read-only REPEATABLE READ transaction (one consistent
picture, no locks taken), then the pure answers of service/domain/explain.py.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from service.adapters.postgres.connection import DATABASE_ERRORS, UNDEFINED_TABLE
from service.adapters.postgres.read_models import read_snapshot
from service.domain.model import PaymentMethod
from service.entrypoints.cli_support import load_settings
from service.service_layer.explain_report import (
    RECENT_BUSINESS_DAYS,
    Report,
    build_report,
    to_json,
)

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


def _balance_fields(b: Report) -> Table:
    low = b["at_or_below_threshold"]
    verdict = (
        _text(None)
        if low is None
        else Text("yes", "yellow")
        if low
        else Text("no (above the threshold)")
    )
    return _fields(
        [
            ("balance", _money(b["amount"], b["currency"])),
            ("occurred_at", b["occurred_at"]),
            ("sequence", b["sequence"]),
            ("event_id", b["event_id"]),
            ("at/below threshold", verdict),
        ]
    )


def _partner_fields(p: Report) -> Table:
    credits = len(p["credits_out"])
    issued = Text(f"{p['credit_issued_since_balance']} {p['currency'] or ''} ({credits} credits)")
    return _fields(
        [
            ("funds customers", p["funded_customers"]),
            ("credit issued since", issued),
            ("available funds", _money(p["available_funds"], p["currency"])),
        ]
    )


def _funding_fields(f: Report) -> Table:
    failure = f["failure_if_due_now"]
    return _fields(
        [
            ("partner balance", _money(f["balance"], f["currency"])),
            ("available funds", _money(f["available_funds"], f["currency"])),
            (
                "a top-up now would",
                Text("issue the credit", "green")
                if failure is None
                else Text(f"fail: {failure}", "red"),
            ),
        ]
    )


def _balance_panel(report: Report) -> Panel:
    b = report["balance"]
    parts: list[RenderableType] = [
        Text("No balance received.") if b is None else _balance_fields(b)
    ]
    p = report["as_partner"]
    if p is not None:
        parts += [Text("\nAs a partner (master account)", style="bold"), _partner_fields(p)]
    f = report["funding_partner"]
    if f is not None:
        parts += [Text(f"\nPaid from partner {f['partner_id']}", style="bold"), _funding_fields(f)]
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


def _invoices_panel(report: Report) -> Panel | None:
    """The customer's open invoices (those max_open_invoices counts), if any."""
    if not report["open_invoices"]:
        return None
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for column in ("day", "amount", "status", "requested at", "invoice_request_id"):
        table.add_column(column, no_wrap=column != "invoice_request_id", overflow="fold")
    for i in report["open_invoices"]:
        status = i["status"] + (" (overdue noticed)" if i["overdue_noticed_at"] else "")
        table.add_row(
            _text(i["business_date"]),
            _money(i["amount"], i["currency"]),
            Text(status),
            _text(i["requested_at"]),
            _text(i["invoice_request_id"]),
        )
    return Panel(table, title="Open invoices (oldest first)", title_align="left")


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
        _invoices_panel(report),
        _next_panel(report),
    ):
        if panel is not None:
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
    settings = load_settings()
    policy = settings.policy
    now = settings.clock()()  # the service's clock (AUTO_TOPUP_CLOCK_OFFSET_SECONDS)
    try:
        snap = asyncio.run(read_snapshot(settings.dsn, customer, now, policy))
    except UNDEFINED_TABLE as exc:
        typer.echo(f"explain: {exc}: run `auto-topup migrate` first", err=True)
        raise typer.Exit(2) from None
    except DATABASE_ERRORS as exc:
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
