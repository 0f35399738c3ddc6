"""Immutable value objects that are cheap to build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from typing_extensions import dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[_T]) -> type[_T]:
    """A frozen dataclass to the type checker (mypy rejects any assignment to a field), built at
    run time as a plain slotted dataclass with a hash. A frozen dataclass sets every field
    through object.__setattr__, four times slower, and these are built for every event."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
