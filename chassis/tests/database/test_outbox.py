"""The outbox relay on real PostgreSQL: order, a failure that stops the round, and work shared
between replicas without a row taken twice. The broker side is a recording publish function:
the broker's part is tested in tests/messaging/test_outbox.py on each real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from service_chassis.database import Database, outbox_table
from service_chassis.database.outbox import OutboxRelay
from service_chassis.database.unit_of_work import OutboxWriter
from service_chassis.messaging.events import Event, NewEvent


class Recorder:
    def __init__(self, *, fail_on: int | None = None, pause: asyncio.Event | None = None) -> None:
        self.ids: list[str] = []
        self.fail_on = fail_on
        self.pause = pause

    async def __call__(
        self, body: bytes, *, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None:
        if self.pause is not None:
            await self.pause.wait()
        if self.fail_on is not None and len(self.ids) == self.fail_on:
            raise ConnectionError("broker gone")
        self.ids.append(message_id)


async def write_events(database: Database, count: int) -> list[str]:
    database.transactions.outbox = OutboxWriter(
        encode=lambda event: event.to_bytes(), destination="test.events", written=lambda: None
    )
    ids = []
    for n in range(count):
        async with database.transaction() as work:
            event = Event.create(NewEvent(type="t", data={"n": n}))
            await work.publish(event)
            ids.append(str(event.id))
    return ids


def relay(
    database: Database, publish: Recorder, batch: int = 100, *, strict: bool = False
) -> OutboxRelay:
    settings = database.settings.model_copy(
        update={"outbox_batch_size": batch, "outbox_strict_order": strict}
    )
    return OutboxRelay(database.engine, publish, settings, CollectorRegistry())


async def unsent(database: Database) -> int:
    async with database.engine.connect() as connection:
        query = (
            select(func.count()).select_from(outbox_table).where(outbox_table.c.sent_at.is_(None))
        )
        return int((await connection.execute(query)).scalar_one())


async def test_relays_in_commit_order_and_marks_rows_sent(database: Database) -> None:
    ids = await write_events(database, 5)
    recorder = Recorder()
    assert await relay(database, recorder).relay_once() == 5
    assert recorder.ids == ids
    assert await unsent(database) == 0
    assert await relay(database, recorder).relay_once() == 0


async def test_a_failed_publish_keeps_the_rest_in_order_for_the_next_round(
    database: Database,
) -> None:
    ids = await write_events(database, 4)
    failing = Recorder(fail_on=2)
    with pytest.raises(ConnectionError):
        await relay(database, failing).relay_once()
    assert failing.ids == ids[:2]
    assert await unsent(database) == 2
    recovered = Recorder()
    await relay(database, recovered).relay_once()
    assert recovered.ids == ids[2:]


async def test_replicas_share_the_work_without_taking_a_row_twice(database: Database) -> None:
    ids = await write_events(database, 6)
    pause = asyncio.Event()
    first = Recorder(pause=pause)
    holding = asyncio.create_task(relay(database, first, batch=3).relay_once())
    await asyncio.sleep(0.3)  # the first replica holds rows 1-3 locked while it publishes
    second = Recorder()
    assert await relay(database, second, batch=3).relay_once() == 3
    pause.set()
    assert await holding == 3
    assert first.ids == ids[:3]
    assert second.ids == ids[3:]


async def test_in_strict_order_one_replica_relays_at_a_time(database: Database) -> None:
    ids = await write_events(database, 6)
    pause = asyncio.Event()
    first = Recorder(pause=pause)
    holding = asyncio.create_task(relay(database, first, batch=3, strict=True).relay_once())
    await asyncio.sleep(0.3)
    second = Recorder()
    assert await relay(database, second, batch=3, strict=True).relay_once() == 0  # stands by
    pause.set()
    assert await holding == 3
    assert await relay(database, second, batch=3, strict=True).relay_once() == 3
    assert first.ids + second.ids == ids


async def test_lag_and_backlog_are_measured(database: Database) -> None:
    await write_events(database, 2)
    registry = CollectorRegistry()
    measured = OutboxRelay(database.engine, Recorder(), database.settings, registry)
    await asyncio.sleep(0.2)
    await measured.measure()
    assert registry.get_sample_value("outbox_backlog_events") == 2
    assert (registry.get_sample_value("outbox_lag_seconds") or 0) >= 0.2
    await measured.relay_once()
    await measured.measure()
    assert registry.get_sample_value("outbox_backlog_events") == 0
    assert registry.get_sample_value("outbox_lag_seconds") == 0
