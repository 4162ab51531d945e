"""The transactional outbox and the persistent inbox, end to end on each real broker and real
PostgreSQL: an event is published if and only if its transaction commits, in the request's
trace; a redelivered event has no second effect."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, MetaData, String, Table, func, insert, select

from service_chassis import Service
from service_chassis.database import CHASSIS_METADATA, DatabaseDependency, UnitOfWork, outbox_table
from service_chassis.database.inbox import Inbox, TransactionalHandler
from service_chassis.database.settings import DatabaseSettings
from service_chassis.messaging.events import Event, NewEvent
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.testing.postgres import create_tables, fresh_database
from service_chassis.testing.servers import eventually, serve
from tests.sample.settings import Settings

pytestmark = pytest.mark.integration

METADATA = MetaData()
effects = Table(
    "effects",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),  # no unique key: repeats would show
)


class Placed(BaseModel):
    id: uuid.UUID


def orders_router(*, fail_after_publish: bool = False) -> APIRouter:
    router = APIRouter()

    @router.post("/orders", status_code=201)
    async def place(database: DatabaseDependency) -> Placed:
        event = Event.create(NewEvent(type="order.placed", data={"n": 1}))
        async with database.transaction() as work:
            await work.session.execute(insert(effects).values(event_id="order"))
            await work.publish(event)
            if fail_after_publish:
                raise RuntimeError("rolled back after publishing")
        return Placed(id=event.id)

    return router


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        await create_tables(url, CHASSIS_METADATA, METADATA)
        yield url


def build(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
    tracer_provider: TracerProvider,
    handle: TransactionalHandler,
    *,
    fail_after_publish: bool = False,
) -> Service:
    service = Service(
        make_settings(database_system="postgres"),
        tracer_provider=tracer_provider,
        messaging_settings=messaging_settings,
        database_settings=DatabaseSettings.for_url(database_url, outbox_poll_seconds=0.2),
    )
    assert service.messaging is not None
    assert service.database is not None
    inbox = Inbox(service.database)
    service.messaging.subscribe(inbox.handler(handle), store=inbox)
    service.include_router(orders_router(fail_after_publish=fail_after_publish))
    return service


async def test_a_committed_event_is_relayed_once_in_the_requests_trace(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    handled: list[Event] = []

    async def handle(event: Event, work: UnitOfWork) -> None:
        await work.session.execute(insert(effects).values(event_id=str(event.id)))
        handled.append(event)

    service = build(make_settings, messaging_settings, database_url, tracer_provider, handle)
    async with serve(service.app) as client:
        response = await client.post("/orders")
        assert response.status_code == 201, response.text
        await eventually(lambda: len(handled) == 1, what="the event was handled")
        database = service.database
        assert database is not None
        sent: list[object] = []

        async def marked_sent() -> bool:
            # The relay marks the row once the broker confirmed, which may be after the
            # consumer, on the other side of the broker, has handled the event.
            async with database.transaction() as work:
                rows = await work.session.execute(select(outbox_table.c.sent_at))
                sent[:] = rows.scalars().all()
            return all(at is not None for at in sent)

        await eventually(marked_sent, what="the outbox row was marked sent")
        metrics = (await client.get("/metrics")).text
    assert str(handled[0].id) == response.json()["id"]
    assert len(sent) == 1
    assert "outbox_relayed_events_total 1.0" in metrics
    spans = span_exporter.get_finished_spans()
    server = next(s for s in spans if s.name.startswith("POST"))
    process = next(
        s for s in spans if (s.attributes or {}).get("messaging.operation.type") == "process"
    )
    assert process.context is not None
    assert server.context is not None
    assert process.context.trace_id == server.context.trace_id
    query_count = (server.attributes or {})["db.client.query_count"]
    assert isinstance(query_count, int)
    assert query_count >= 2


async def test_a_rolled_back_transaction_publishes_nothing(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
    tracer_provider: TracerProvider,
) -> None:
    handled: list[Event] = []

    async def handle(event: Event, work: UnitOfWork) -> None:
        handled.append(event)

    service = build(
        make_settings,
        messaging_settings,
        database_url,
        tracer_provider,
        handle,
        fail_after_publish=True,
    )
    async with serve(service.app) as client:
        response = await client.post("/orders")
        assert response.status_code == 500
        await asyncio.sleep(1.0)  # several relay polls
        assert service.database is not None
        async with service.database.transaction() as work:
            rows = (
                await work.session.execute(select(func.count()).select_from(outbox_table))
            ).scalar()
    assert rows == 0
    assert handled == []


async def test_a_redelivered_event_has_no_second_effect(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
    tracer_provider: TracerProvider,
) -> None:
    calls: list[str] = []

    async def handle(event: Event, work: UnitOfWork) -> None:
        await work.session.execute(insert(effects).values(event_id=str(event.id)))
        calls.append(str(event.id))

    service = build(make_settings, messaging_settings, database_url, tracer_provider, handle)
    event = Event.create(NewEvent(type="order.placed", data={}))
    async with serve(service.app):
        assert service.messaging is not None
        assert service.database is not None
        for _ in range(3):  # the same event id three times, as redeliveries would bring it
            await service.messaging.publisher.publish(event)
        await eventually(lambda: len(calls) >= 1, what="the event was handled")
        await asyncio.sleep(0.5)
        async with service.database.transaction() as work:
            effect_rows = (
                await work.session.execute(
                    select(func.count()).where(effects.c.event_id == str(event.id))
                )
            ).scalar()
    assert effect_rows == 1
    assert calls == [str(event.id)]
