"""`auto-topup simulate CUSTOMER --from TIME [--to TIME] [proposed settings...]`: what proposed
settings would have done over a customer's recorded history, beside what the recorded ones did.

Reads only Kafka (the customer's partition of each input topic, and its partners' partition of
wallet-balance-changed; see `adapters/kafka/customer_records.py`), never PostgreSQL, and
writes nothing anywhere. The pure simulation is `service_layer/simulation.py`.

The proposed settings options come from one table, `PROPOSABLE`: one row per field of the
domain `SettingsUpdated`, laid over every settings event of the customer with
`dataclasses.replace`. A new settings field is one more row.
"""

import asyncio
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich import box
from rich.table import Table
from rich.text import Text

from service.adapters.kafka.customer_records import (
    WAIT_SECONDS,
    RecordsError,
    quiet_client_logs,
    read_keyed,
)
from service.adapters.kafka.security import kafka_access
from service.config import Settings
from service.contract.codec import decode_balance, decode_settings
from service.contract.types import Money, PositiveMoney
from service.domain.calendar import is_valid_timezone
from service.domain.model import AmountMode, BalanceChanged, PaymentMethod, SettingsUpdated
from service.entrypoints.cli_support import console, load_settings, parse_time, printable
from service.service_layer.simulation import History, Proposal, proposal_error, simulate
from service.service_layer.simulation_report import to_json

EXIT_FAILED = 1  # Kafka unreachable, a topic missing, or no record of the customer

# --- the proposed settings: one row per field ------------------------------------------------


def _money(adapter: TypeAdapter[Any]) -> Callable[[Any, str], object]:
    """An amount parsed exactly, by the contract's own rules (a plain decimal string)."""

    def parse(text: Any, flag: str) -> object:
        try:
            return adapter.validate_python(str(text).strip())
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise typer.BadParameter(
                f"{printable(str(text))!r}: {problem}", param_hint=flag
            ) from None

    return parse


def _timezone(text: Any, flag: str) -> object:
    if not is_valid_timezone(str(text)):
        raise typer.BadParameter(f"unknown IANA timezone {printable(str(text))!r}", param_hint=flag)
    return str(text)


def _as_is(v: Any, flag: str) -> object:
    return v


@dataclass(frozen=True)
class Proposable:
    """One proposed-settings option: the field it sets, its flag(s), the type typer parses,
    and the check that turns it into the field's value."""

    field: str
    flags: str
    kind: Any
    help: str
    parse: Callable[[Any, str], object] = _as_is
    metavar: str | None = None

    def parameter(self) -> inspect.Parameter:
        option = typer.Option(
            self.flags, metavar=self.metavar, help=self.help, rich_help_panel="Proposed settings"
        )
        annotation = Annotated[self.kind | None, option]  # type: ignore[name-defined]
        return inspect.Parameter(
            self.field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
        )


PROPOSABLE: tuple[Proposable, ...] = (
    Proposable(
        "trigger_amount",
        "--trigger-amount",
        str,
        "Trigger Amount (also the card's, for a Stripe customer).",
        _money(TypeAdapter(PositiveMoney)),
        "AMOUNT",
    ),
    Proposable(
        "limit_threshold",
        "--limit-threshold",
        str,
        "Limit Threshold (also the card's, for a Stripe customer).",
        _money(TypeAdapter(Money)),
        "AMOUNT",
    ),
    Proposable("auto_trigger", "--auto-trigger/--no-auto-trigger", bool, "Auto-trigger."),
    Proposable("payment_method", "--payment-method", PaymentMethod, "Payment method."),
    Proposable("partner_id", "--partner-id", str, "Partner (master account).", metavar="ID"),
    Proposable("timezone", "--timezone", str, "IANA timezone.", _timezone, "ZONE"),
    Proposable(
        "amount_mode",
        "--amount-mode",
        AmountMode,
        "How much one top-up is (fixed, to_target, cover_gap).",
    ),
    Proposable(
        "target_balance",
        "--target-balance",
        str,
        "The balance a to_target top-up brings the wallet to.",
        _money(TypeAdapter(Money)),
        "AMOUNT",
    ),
    Proposable(
        "max_amount",
        "--max-amount",
        str,
        "No single top-up is larger.",
        _money(TypeAdapter(PositiveMoney)),
        "AMOUNT",
    ),
    Proposable(
        "monthly_cap",
        "--monthly-cap",
        str,
        "A calendar month's top-ups add up to at most this.",
        _money(TypeAdapter(PositiveMoney)),
        "AMOUNT",
    ),
    Proposable(
        "fallback_method",
        "--fallback-method",
        PaymentMethod,
        "Used in the same attempt when the payment method fails (cheque_tt, master_account).",
    ),
    Proposable(
        "max_open_invoices",
        "--max-open-invoices",
        int,
        "Cheque / TT: no new invoice while this many are open.",
    ),
)


def proposal_of(given: Mapping[str, Any]) -> Proposal:
    """The options given, as field name -> value (those not given are left as recorded)."""
    return {
        p.field: p.parse(given[p.field], p.flags.split("/")[0])
        for p in PROPOSABLE
        if given.get(p.field) is not None
    }


# --- reading ---------------------------------------------------------------------------------


async def read_history(
    settings: Settings, customer: str, proposal: Proposal, wait: float
) -> History:
    """The customer's records of both input topics, then its partners' balances (every partner
    its settings named, and the proposed one). RecordsError: none at all."""
    kafka = kafka_access(settings)
    topics = settings.topics
    key = customer.encode()
    found = await read_keyed(
        kafka, [(topics.settings_updated, key), (topics.wallet_balance_changed, key)], wait
    )
    decoded = [decode_settings(r.value, r.key) for r in found[(topics.settings_updated, key)]]
    own = [e for e in decoded if isinstance(e, SettingsUpdated)]
    balances = [
        e
        for r in found[(topics.wallet_balance_changed, key)]
        if isinstance(e := decode_balance(r.value, r.key), BalanceChanged)
    ]
    if (
        not found[(topics.settings_updated, key)]
        and not found[(topics.wallet_balance_changed, key)]
    ):
        raise RecordsError(f"no records of customer {customer!r} in the input topics")
    partners = {e.partner_id for e in own if e.partner_id is not None}
    if isinstance(proposal.get("partner_id"), str):
        partners.add(str(proposal["partner_id"]))
    partners.discard(customer)
    wanted = [(topics.wallet_balance_changed, p.encode()) for p in sorted(partners)]
    theirs = await read_keyed(kafka, wanted, wait) if wanted else {}
    partner_balances = [
        e
        for records in theirs.values()
        for r in records
        if isinstance(e := decode_balance(r.value, r.key), BalanceChanged)
    ]
    return History(customer, own, balances, partner_balances)


# --- rendering -------------------------------------------------------------------------------


def _counts(counts: Mapping[str, int]) -> str:
    return "\n".join(f"{k}: {n}" for k, n in counts.items()) or "—"


def _top_ups(s: Mapping[str, Any]) -> str:
    lines = [
        f"{t['business_date']}  {t['method']}  {t['amount']} {t['currency']}"
        + (f"  failed: {t['reason']}" if t["result"] == "failed" else "")
        for t in s["top_ups"]
    ]
    return "\n".join(lines) or "—"


ROWS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("top-ups", lambda s: str(s["count"])),
    ("each top-up", _top_ups),
    ("total", lambda s: "\n".join(f"{a} {c}" for c, a in s["totals"].items()) or "0"),
    ("days at or below threshold", lambda s: str(s["days_at_or_below_threshold"])),
    ("lowest balance", lambda s: s["lowest_balance"] or "—"),
    ("suppressed", lambda s: _counts(s["suppressed"])),
    ("blocked", lambda s: _counts(s["blocked"])),
    ("failed", lambda s: _counts(s["failed"])),
    ("rejected records", lambda s: _counts(s["rejected"])),
    ("notices", lambda s: "\n".join(s["notices"]) or "—"),
)


def render(report: Mapping[str, Any]) -> None:
    out = console()
    proposal = ", ".join(f"{k}={v}" for k, v in report["proposal"].items()) or "none"
    out.print(Text(f"customer {report['customer_id']}: {report['from']} to {report['to']}"))
    out.print(Text(f"proposed: {proposal}"))
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for name in ("", "current", "proposed"):
        table.add_column(name, overflow="fold")
    for name, cell in ROWS:
        table.add_row(Text(name), Text(cell(report["current"])), Text(cell(report["proposed"])))
    out.print(table)
    for line in report["assumptions"]:
        out.print(Text(f"note: {line}", style="dim"))


# --- the command -----------------------------------------------------------------------------


def _simulate(
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER", help="The customer's id.")],
    since: Annotated[
        str,
        typer.Option(
            "--from", metavar="TIME", help="Count decisions from this time (RFC 3339, with offset)."
        ),
    ],
    until: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="TIME", help="Up to this time (default: now, the service's clock)."
        ),
    ] = None,
    shift_balances: Annotated[
        bool,
        typer.Option(
            "--shift-balances",
            help="Move the proposed run's later balances by its credits less the recorded "
            "run's, as if every top-up had been credited at once (default: as recorded).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0.1, metavar="SECONDS", help="How long to wait for Kafka."),
    ] = WAIT_SECONDS,
    **proposed: Any,
) -> None:
    """Try settings on a customer's history: what they would have done, beside what the
    recorded ones did. Reads Kafka only; changes nothing."""
    start = parse_time(since, "--from")
    proposal = proposal_of(proposed)
    problem = proposal_error(proposal)
    if problem is not None:  # a row of PROPOSABLE that names no settings field
        raise typer.BadParameter(problem)
    settings = load_settings()
    end = parse_time(until, "--to") if until is not None else settings.clock()()
    if end < start:
        raise typer.BadParameter(f"{until} is before --from {since}", param_hint="--to")
    quiet_client_logs()
    try:
        history = asyncio.run(read_history(settings, customer, proposal, wait))
    except RecordsError as exc:
        typer.echo(f"error: {printable(str(exc))}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    simulation = simulate(
        history, settings.policy, proposal, start, end, shift_balances=shift_balances
    )
    report = to_json(simulation)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        render(report)


def _with_proposed_options(command: Callable[..., None]) -> Callable[..., None]:
    """The command's signature with one keyword option per row of PROPOSABLE, for typer."""
    base = inspect.signature(command, eval_str=True)
    fixed = [p for p in base.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = base.replace(  # type: ignore[attr-defined]
        parameters=[*fixed, *(p.parameter() for p in PROPOSABLE)]
    )
    return command


simulate_command = _with_proposed_options(_simulate)
