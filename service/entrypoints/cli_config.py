"""`auto-topup config check` and `config show`: the settings as the service reads them from the
environment, checked, or listed with where each value came from; and the list of environment
variables that `run --help` shows. Everything here is read from the Settings model
(service/config.py), never written by hand, so that a new setting shows up by itself.

No database and no broker: it only reads the environment."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from service.config import Settings
from service.entrypoints.cli_support import load_settings

MASK = "***"
# The password of a URL's user (scheme://user:password@host), every host of a multi-host URL.
_PASSWORD = re.compile(r"(://(?:[^:@/\s]*):)[^@/\s]*@")
# A password given as a query parameter (libpq and asyncpg accept `password`, `sslpassword`).
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#\s]*", re.IGNORECASE)

config = typer.Typer(
    help="Check the settings the service reads from the environment, or show them.",
    no_args_is_help=True,
)

Source = Literal["environment", "default"]


@dataclass(frozen=True)
class Shown:
    """One setting as `config show` prints it."""

    name: str  # the environment variable
    value: Any  # JSON-ready; secrets masked
    source: Source


def variables(field: FieldInfo) -> list[str]:
    """The environment variables one field is read from, the preferred first."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return []


def _masked(value: Any) -> Any:
    """A secret as ***; a URL's password as ***; anything else as it is (JSON-ready)."""
    if isinstance(value, SecretStr):
        return MASK
    if value is None or isinstance(value, bool | int | float):
        return value
    return _QUERY_PASSWORD.sub(rf"\1{MASK}", _PASSWORD.sub(rf"\1{MASK}@", str(value)))


def shown(settings: Settings) -> list[Shown]:
    rows = []
    for attribute, field in Settings.model_fields.items():
        names = variables(field)
        if not names:
            continue
        given = [name for name in names if name in os.environ]
        source: Source = "environment" if given else "default"
        value = _masked(getattr(settings, attribute))
        rows.append(Shown(given[0] if given else names[0], value, source))
    return rows


def environment_help() -> str:
    """The environment variables `run` reads, with their defaults (for its --help)."""
    lines = []
    for field in Settings.model_fields.values():
        names = variables(field)
        if not names:
            continue
        if field.is_required():
            default = "required"
        elif field.default is None:
            default = "unset"
        else:
            default = f"default {_masked(field.default)}"
        lines.append(f"{names[0]} ({default})")
    heading = "Environment variables (docs/configuration.md says what each does):"
    return heading + "\n\n" + "\n".join(lines)


@config.command()
def check(
    run: Annotated[
        bool, typer.Option("--run", help="Also require what `run` needs (STRIPE_API_KEY).")
    ] = False,
) -> None:
    """Load the settings from the environment and check them: "ok" (exit 0), or one line per
    bad setting (exit 2)."""
    load_settings(stripe=run)
    typer.echo("ok")


@config.command()
def show(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per setting.")] = False,
) -> None:
    """Every setting with its value and where it came from (environment or default); secrets
    and passwords shown as ***. A bad setting: one line each, exit 2."""
    rows = shown(load_settings())
    if as_json:
        for row in rows:
            typer.echo(json.dumps({"name": row.name, "value": row.value, "source": row.source}))
        return
    width = max(len(row.name) for row in rows)
    for row in rows:
        value = "(unset)" if row.value is None else str(row.value)
        typer.echo(f"{row.name:<{width}}  {row.source:<11}  {value}")
