"""The reason and outcome tables in docs/ list exactly the members of the enums in
service/domain/reasons.py: a code without a row, or a row without a code, fails."""

import ast
import inspect
import re
from enum import Enum
from pathlib import Path

import pytest

from service.domain import reasons, rules
from service.domain.reasons import (
    AdviceReason,
    BlockReason,
    ChargePhase,
    ClaimResult,
    DeadLetterReason,
    ExitCode,
    FailureReason,
    InvoiceOutcome,
    NextCode,
    NoticeType,
    OutboxState,
    RecordOutcome,
    StaleReason,
    StripeCallOutcome,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Each enum, the file in docs/ and the heading of the section whose first table lists it.
TABLES: list[tuple[type[Enum], str, str]] = [
    (RecordOutcome, "rules.md", "Outcomes"),
    (BlockReason, "rules.md", "Blocked and suppressed reasons"),
    (StaleReason, "rules.md", "Stale reasons"),
    (FailureReason, "rules.md", "`top-up-failed` reasons"),
    (DeadLetterReason, "rules.md", "Dead-letter reasons"),
    (NoticeType, "rules.md", "Notice types"),
    (InvoiceOutcome, "rules.md", "Invoice statuses"),
    (NextCode, "operating.md", "Why no top-up?"),
    (ChargePhase, "operating.md", "Charge phases"),
    (ClaimResult, "operating.md", "Daily key results"),
    (OutboxState, "operating.md", "Outbox states"),
    (StripeCallOutcome, "operating.md", "Outcomes of Stripe calls"),
    (ExitCode, "operating.md", "Exit codes"),
    (AdviceReason, "rules.md", "Advice reasons"),
]

_HEADING = re.compile(r"^#+ (.*)$")


def table_codes(text: str, heading: str) -> set[str]:
    """The codes in the first column of the first table under `heading` (up to the next
    heading): the `quoted` ones of each cell, or the whole cell when none is quoted."""
    lines = text.splitlines()
    titles = {i: m.group(1).strip() for i, line in enumerate(lines) if (m := _HEADING.match(line))}
    starts = sorted(titles)
    found = [i for i in starts if titles[i] == heading]
    if len(found) != 1:
        raise LookupError(f"{len(found)} headings {heading!r}")
    end = next((i for i in starts if i > found[0]), len(lines))
    rows = [line for line in lines[found[0] + 1 : end] if line.startswith("|")]
    if len(rows) < 3:
        raise LookupError(f"no table with rows under {heading!r}")
    codes: set[str] = set()
    for row in rows[2:]:  # past the header and its |---| line
        cell = row.split("|")[1]
        codes.update(re.findall(r"`([^`]+)`", cell) or [cell.strip()])
    return codes


@pytest.mark.parametrize(
    ("kind", "doc", "heading"), TABLES, ids=[kind.__name__ for kind, _, _ in TABLES]
)
def test_each_table_lists_exactly_the_members(kind: type[Enum], doc: str, heading: str) -> None:
    documented = table_codes((DOCS / doc).read_text(encoding="utf-8"), heading)
    members = {str(member.value) for member in kind}
    assert not members - documented, f"{kind.__name__} members with no row in docs/{doc}"
    assert not documented - members, f"rows in docs/{doc} {heading!r} with no {kind.__name__}"


def test_every_enum_of_reasons_has_a_table() -> None:
    enums = {
        obj
        for _, obj in inspect.getmembers(reasons, inspect.isclass)
        if issubclass(obj, Enum) and obj.__module__ == reasons.__name__
    }
    assert enums == {kind for kind, _, _ in TABLES}


def test_table_codes_reads_every_quoted_code_of_the_first_column() -> None:
    text = "\n".join(
        [
            "## Other",
            "| code | meaning |",
            "|---|---|",
            "| `elsewhere` | not this section |",
            "## Codes",
            "Some words.",
            "",
            "| code | meaning |",
            "|---|---|",
            "| `one`, `two`, ... | Stripe's `three` is not in the first column |",
            "| 130 | a number |",
            "### Next",
            "| code | meaning |",
            "|---|---|",
            "| `later` | the next section |",
        ]
    )
    assert table_codes(text, "Codes") == {"one", "two", "130"}
    with pytest.raises(LookupError):
        table_codes(text, "Missing")


_CODE = re.compile(r"[a-z]+(_[a-z0-9]+)+")


def reasons_written(source: str) -> set[str]:
    """The snake_case strings a module gives as reasons: `reason=` arguments, the arguments of
    `_reject` and `_blocked`, and what a function returns (a code, a (code, detail) pair, or a
    value built from a code)."""
    found: set[str] = set()

    def take(node: ast.expr) -> None:
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and _CODE.fullmatch(text):
            found.add(text)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "reason":
            take(node.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"_reject", "_blocked"}:
            for arg in node.args:
                take(arg)
        elif isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            take(value)
            if isinstance(value, ast.Tuple) and value.elts:
                take(value.elts[0])
            if isinstance(value, ast.Call):
                for arg in value.args:
                    take(arg)
    return found


def test_reasons_written_finds_the_codes_a_rule_gives() -> None:
    source = "\n".join(
        [
            "def f(w):",
            "    if w: return _reject(w, 'future_dated', 'detail')",
            "    if w: return ('invalid_timezone', 'detail')",
            "    if w: return Outcome(w, reason='stale_balance')",
            "    for name in ('trigger_amount', 'limit_threshold'): pass",
            "    return 'no_settings'",
        ]
    )
    assert reasons_written(source) == {
        "future_dated",
        "invalid_timezone",
        "stale_balance",
        "no_settings",
    }


def test_the_rules_and_rails_name_no_reason_as_a_bare_string() -> None:
    """Every reason the rules and the rails give is an enum member (so it has a row in the
    docs, and is counted): none is written as a bare string (the test above shows that this
    finds one)."""
    domain = Path(inspect.getfile(rules)).parent
    written: dict[str, set[str]] = {}
    for module in [domain / "rules.py", *sorted((domain / "rails").glob("*.py"))]:
        found = reasons_written(module.read_text(encoding="utf-8"))
        if found:
            written[module.name] = found
    assert written == {}
