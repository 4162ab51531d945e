"""The inbox on real PostgreSQL: an event id's effects commit once, whatever the deliveries."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, insert, select

from service_chassis.database import Database, UnitOfWork
from service_chassis.database.inbox import Inbox
from service_chassis.messaging.events import Event, NewEvent

from .conftest import notes


async def effects(database: Database) -> int:
    async with database.transaction() as work:
        return int(
            (await work.session.execute(select(func.count()).select_from(notes))).scalar_one()
        )


async def test_a_second_delivery_has_no_effect(database: Database) -> None:
    inbox = Inbox(database)
    calls = 0

    async def handle(event: Event, work: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await work.session.execute(insert(notes).values(text=str(event.id)))

    handler = inbox.handler(handle)
    event = Event.create(NewEvent(type="t", data={}))
    await handler(event)
    await handler(event)
    assert calls == 1
    assert await effects(database) == 1
    assert not await inbox.claim(str(event.id))  # the consumer skips it before any work


async def test_a_failed_attempt_leaves_neither_effect_nor_id(database: Database) -> None:
    inbox = Inbox(database)
    attempts = 0

    async def handle(event: Event, work: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await work.session.execute(insert(notes).values(text="effect"))
        if attempts == 1:
            raise RuntimeError("first attempt fails after writing")

    handler = inbox.handler(handle)
    event = Event.create(NewEvent(type="t", data={}))
    with pytest.raises(RuntimeError):
        await handler(event)
    assert await effects(database) == 0
    assert await inbox.claim(str(event.id))
    await handler(event)
    assert await effects(database) == 1


async def test_two_replicas_handed_the_same_event_at_once_apply_it_once(
    database: Database,
) -> None:
    started = asyncio.Event()

    async def slow(event: Event, work: UnitOfWork) -> None:
        await work.session.execute(insert(notes).values(text="effect"))
        started.set()
        await asyncio.sleep(0.3)  # the other replica's insert of the id waits on this one

    event = Event.create(NewEvent(type="t", data={}))
    first = asyncio.create_task(Inbox(database).handler(slow)(event))
    await started.wait()
    await Inbox(database).handler(slow)(event)
    await first
    assert await effects(database) == 1
