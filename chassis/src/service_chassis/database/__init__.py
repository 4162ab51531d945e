"""PostgreSQL for a service that owns its data (``service-chassis[postgres]``).

- ``Database``: SQLAlchemy 2 (async) on asyncpg, a pool sized by ``DATABASE_*`` settings,
  client spans and metrics on the stable database conventions, a readiness check, the pool
  closed last on shutdown;
- ``database.transaction()``: a ``UnitOfWork`` (``work.session``, ``work.publish(event)``) whose
  ``statement_timeout`` is the request's remaining deadline;
- the transactional outbox (``work.publish``) and its ``OutboxRelay``; the persistent
  ``Inbox`` for consumers; Alembic ``upgrade``/``downgrade`` and ``run_migrations`` for env.py.

In a route, take the unit of work as a dependency::

    @router.post("/orders")
    async def place(new: NewOrder, database: DatabaseDependency) -> Order:
        async with database.transaction() as work:
            work.session.add(row := OrderRow(...))
            await work.publish(Event.create(...))   # sent if and only if this commits
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..problems import Problem
from .database import Database
from .errors import DatabaseTimeout, DatabaseUnavailable
from .schema import CHASSIS_METADATA, inbox_table, outbox_table
from .settings import DatabaseSettings
from .unit_of_work import OutboxNotConfigured, UnitOfWork, current_unit_of_work
from .url import DatabaseURL

__all__ = [
    "CHASSIS_METADATA",
    "Database",
    "DatabaseDependency",
    "DatabaseOff",
    "DatabaseSettings",
    "DatabaseTimeout",
    "DatabaseURL",
    "DatabaseUnavailable",
    "OutboxNotConfigured",
    "UnitOfWork",
    "current_unit_of_work",
    "inbox_table",
    "outbox_table",
]


class DatabaseOff(Problem):
    status = 503
    type = "urn:problem:database-off"
    title = "Database off"


async def database_of(request: Request) -> Database:
    """FastAPI dependency: the service's database (a 503 problem when it has none)."""
    database: Database | None = getattr(request.app.state, "database", None)
    if database is None:
        raise DatabaseOff("This service runs without a database (DATABASE_SYSTEM=none).")
    return database


DatabaseDependency = Annotated[Database, Depends(database_of)]
