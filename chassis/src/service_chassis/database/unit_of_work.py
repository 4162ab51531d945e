"""The unit of work: one transaction, its session, and the events it publishes.

``async with database.transaction() as work:`` opens a session in a transaction, sets
``statement_timeout`` for it from the request's remaining deadline (never longer than
``DATABASE_STATEMENT_TIMEOUT_SECONDS``), and commits when the block ends without an error
(rolls back otherwise). ``work.publish(event)`` writes the event to the outbox in that same
transaction: it is published if and only if the change commits.

Failures come out as problems: a cancelled statement or a connection not had in time as the
504 of a timed-out downstream, an unreachable database as a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate
from sqlalchemy import exc, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..resilience.deadline import get_deadline
from .errors import QUERY_CANCELED, UNAVAILABLE_CODES, DatabaseTimeout, DatabaseUnavailable
from .pool import PoolMetrics
from .schema import outbox_table
from .telemetry import _sqlstate

if TYPE_CHECKING:
    from ..messaging.events import Event


class OutboxNotConfigured(RuntimeError):
    """``publish`` in a unit of work of a service without messaging."""


# Encodes an event for the outbox and names its default destination (the messaging settings').
EventEncoder = Callable[["Event"], bytes]


@dataclass
class OutboxWriter:
    encode: EventEncoder
    destination: str
    written: Callable[[], None]  # wakes the relay after a commit


@dataclass
class UnitOfWork:
    session: AsyncSession
    _outbox: OutboxWriter | None = None
    _published: int = field(default=0)

    @property
    def publishes(self) -> bool:
        """Whether ``publish`` can write events: the service has messaging on too."""
        return self._outbox is not None

    async def publish_new(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        destination: str | None = None,
    ) -> uuid.UUID:
        """Make an event of ``event_type`` with ``data`` and ``publish`` it; its id. Code that
        must also run without a broker uses this, as it needs no messaging import."""
        from ..messaging.events import Event, NewEvent

        event = Event.create(
            NewEvent(type=event_type, data=dict(data)), idempotency_key=idempotency_key
        )
        await self.publish(event, destination=destination)
        return event.id

    async def publish(self, event: Event, *, destination: str | None = None) -> None:
        """Write ``event`` to the outbox in this transaction; the relay publishes it after
        the commit, with the event id as the message id."""
        if self._outbox is None:
            raise OutboxNotConfigured("publishing through the outbox needs messaging on")
        headers: dict[str, str] = {}
        propagate.inject(headers)  # traceparent, tracestate, baggage of this transaction
        await self.session.execute(
            insert(outbox_table).values(
                event_id=event.id,
                destination=destination or self._outbox.destination,
                body=self._outbox.encode(event),
                headers=headers,
            )
        )
        self._published += 1


current_unit_of_work: ContextVar[UnitOfWork | None] = ContextVar(
    "current_unit_of_work", default=None
)


class Transactions:
    """Opens units of work on a session factory, with the pool's wait measured."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pool: PoolMetrics,
        *,
        statement_timeout: float,
        pool_timeout: float,
    ) -> None:
        self._sessions = sessions
        self._pool = pool
        self._statement_timeout = statement_timeout
        self._pool_timeout = pool_timeout
        self.outbox: OutboxWriter | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        deadline = get_deadline()
        within_deadline = deadline is not None and deadline.remaining() < self._statement_timeout
        timeout = deadline.remaining() if deadline is not None and within_deadline else None
        timeout = self._statement_timeout if timeout is None else timeout
        if timeout <= 0.001:
            raise DatabaseTimeout(deadline=True)
        work: UnitOfWork | None = None
        try:
            async with self._sessions() as session:
                await self._connect(session, min(timeout, self._pool_timeout), within_deadline)
                # Again after the wait: the time spent waiting is no longer the request's.
                if within_deadline and deadline is not None:
                    timeout = deadline.remaining()
                    if timeout <= 0.001:
                        raise DatabaseTimeout(deadline=True)
                millis = max(1, math.floor(timeout * 1000))
                # SET LOCAL takes no parameters; the value is an integer we computed.
                await session.execute(text(f"SET LOCAL statement_timeout = {millis}"))
                work = UnitOfWork(session, self.outbox)
                token = current_unit_of_work.set(work)
                try:
                    yield work
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                finally:
                    current_unit_of_work.reset(token)
        except exc.DBAPIError as error:
            problem = _as_problem(error, within_deadline)
            if problem is None:
                raise
            raise problem from error
        if work is not None and work._published and self.outbox is not None:
            self.outbox.written()

    async def _connect(self, session: AsyncSession, wait: float, deadline: bool) -> None:
        async with self._pool.waiting():
            try:
                async with asyncio.timeout(wait):
                    await session.connection()
            except (TimeoutError, exc.TimeoutError):
                raise DatabaseTimeout(deadline=deadline) from None
            except OSError as error:  # refused, unreachable: before any DBAPI error exists
                raise DatabaseUnavailable() from error


def _as_problem(error: exc.DBAPIError, deadline: bool) -> Exception | None:
    """The problem a driver error answers, or None when it is the query's own fault."""
    code = _sqlstate(error)
    if code == QUERY_CANCELED:
        return DatabaseTimeout(deadline=deadline)
    if error.connection_invalidated or code.startswith("08") or code in UNAVAILABLE_CODES:
        return DatabaseUnavailable()
    if isinstance(error.orig, OSError) or isinstance(error.__cause__, OSError):
        return DatabaseUnavailable()
    if isinstance(error, exc.InterfaceError):  # the connection closed under the driver
        return DatabaseUnavailable()
    return None
