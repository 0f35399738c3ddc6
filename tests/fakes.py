"""The in-memory unit of work, under the names the tests have always used (fakes over mocks).

It lives in service/adapters/memory.py (the dry-run replay uses it too); see there for its
semantics.
"""

from __future__ import annotations

from service.adapters.memory import MemoryDatabase as FakeDatabase
from service.adapters.memory import MemoryStore as FakeStore
from service.adapters.memory import MemoryUnitOfWork as FakeUnitOfWork
from service.adapters.memory import Tables
from service.service_layer.ports import UnitOfWorkFactory

__all__ = ["FakeDatabase", "FakeStore", "FakeUnitOfWork", "Tables", "fake_uow_factory"]


def fake_uow_factory() -> tuple[FakeDatabase, UnitOfWorkFactory]:
    """A fresh, empty database and the unit-of-work factory to give the handler."""
    db = FakeDatabase()
    return db, db.unit_of_work
