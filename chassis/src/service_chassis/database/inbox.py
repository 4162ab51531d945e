"""The persistent inbox: a handled event's id is committed with the handler's effects.

``Inbox(database).handler(handle)`` turns ``handle(event, work)`` into the consumer's handler:
each attempt runs in one unit of work that first inserts the event's id into the inbox
(``ON CONFLICT DO NOTHING``) and then runs ``handle`` with that unit of work. Both commit
together or not at all, so:

- an event redelivered after its effects committed (a consumer killed before its ack, a
  broker outage, a rebalance) finds its id and is skipped: no second effect;
- an attempt that fails rolls its id back with its effects: the retry starts clean;
- two replicas handed the same event at once serialise on the id's unique key: the second
  waits for the first, then finds the id and does nothing.

The inbox is also the consumer's ``IdempotencyStore``: ``claim`` skips an id already in the
table before any work starts (and counts it as a duplicate), ``complete`` has nothing left to
do (the id was committed with the effects), ``release`` forgets an in-flight claim.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from ..messaging.events import Event
from .database import Database
from .schema import inbox_table
from .telemetry import untraced
from .unit_of_work import UnitOfWork

TransactionalHandler = Callable[[Event, UnitOfWork], Awaitable[None]]


class Inbox:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._in_flight: set[str] = set()

    def handler(self, handle: TransactionalHandler) -> Callable[[Event], Coroutine[Any, Any, None]]:
        """The consumer's handler: ``handle`` runs once per event id, in its transaction."""

        async def handle_once(event: Event) -> None:
            async with self._database.transaction() as work:
                recorded = await work.session.execute(
                    insert(inbox_table)
                    .values(event_id=str(event.id))
                    .on_conflict_do_nothing()
                    .returning(inbox_table.c.event_id)
                )
                if recorded.first() is None:
                    return  # committed by an earlier delivery or another replica
                await handle(event, work)

        return handle_once

    def wrap(
        self, handler: Callable[[Event], Awaitable[None]]
    ) -> Callable[[Event], Awaitable[None]]:
        """``handler(event)`` as the consumer's handler, once per event id, in the inbox's
        transaction (``current_unit_of_work.get()`` gives it to code that writes)."""

        async def handle(event: Event, work: UnitOfWork) -> None:
            await handler(event)

        return self.handler(handle)

    async def claim(self, message_id: str) -> bool:
        if message_id in self._in_flight:
            return False
        self._in_flight.add(message_id)
        try:
            with untraced():
                async with self._database.engine.connect() as connection:
                    found = await connection.execute(
                        select(inbox_table.c.event_id).where(inbox_table.c.event_id == message_id)
                    )
                    done = found.first() is not None
        except Exception:
            # The database is down: let the handler's own transaction find out and wait.
            done = False
        if done:
            self._in_flight.discard(message_id)
        return not done

    async def complete(self, message_id: str) -> None:
        self._in_flight.discard(message_id)

    async def release(self, message_id: str) -> None:
        self._in_flight.discard(message_id)
