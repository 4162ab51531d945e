"""Saga steps as commands over the broker, on each real broker and real PostgreSQL.

The step sends its command through the outbox in the transition's transaction; a participant
handler acts (once per command, through the inbox) and replies with an event; the reply's
handler moves the saga on in its own unit of work. A reply that never comes is a failure of
unknown outcome after the step's ``reply_timeout``, and the step is compensated.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select

from service_chassis import Service
from service_chassis.database import CHASSIS_METADATA, UnitOfWork
from service_chassis.database.inbox import Inbox
from service_chassis.database.settings import DatabaseSettings
from service_chassis.messaging.events import Event
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.sagas import (
    ActionOutcome,
    SagaDefinition,
    SagaOrchestrator,
    SagaRunner,
    SagaStatus,
    SagaStep,
    StepContext,
)
from service_chassis.sagas import metadata as SAGA_METADATA  # noqa: N812
from service_chassis.testing.postgres import create_tables, fresh_database
from service_chassis.testing.servers import eventually, serve
from tests.sample.settings import Settings

pytestmark = pytest.mark.integration

METADATA = MetaData()
effects = Table(
    "effects",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("command", String(200), nullable=False),  # no unique key: repeats would show
    Column("key", String(200), nullable=False),
)


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        await create_tables(url, CHASSIS_METADATA, SAGA_METADATA, METADATA)
        yield url


def command_step(name: str, *, reply_timeout: float) -> SagaStep:
    async def send(context: StepContext, kind: str) -> None:
        assert context.work is not None
        data = {
            "saga_id": str(context.saga_id),
            "step": name,
            "kind": kind,
            "key": context.idempotency_key,
        }
        await context.work.publish_new(f"{name}.{kind}", data, idempotency_key=context.message_key)

    async def act(context: StepContext) -> None:
        await send(context, "action")

    async def undo(context: StepContext) -> None:
        await send(context, "compensation")

    return SagaStep(name, act, undo, reply_timeout=timedelta(seconds=reply_timeout))


def build(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
    *,
    silent: set[str],
    refusing: set[str],
) -> tuple[Service, SagaOrchestrator]:
    service = Service(
        make_settings(database_system="postgres"),
        tracer_provider=TracerProvider(),
        messaging_settings=messaging_settings,
        database_settings=DatabaseSettings.for_url(database_url, outbox_poll_seconds=0.2),
    )
    assert service.database is not None
    assert service.messaging is not None
    definition = SagaDefinition(
        "ship",
        [command_step("pack", reply_timeout=10), command_step("label", reply_timeout=1.5)],
        retry_backoff=timedelta(milliseconds=100),
    )
    orchestrator = SagaOrchestrator(service.database, [definition])
    service.components.append(SagaRunner(orchestrator, poll_interval=0.1))

    async def handle(event: Event, work: UnitOfWork) -> None:
        data = event.data
        if event.type == "saga.reply":
            await orchestrator.reply(
                work.session,
                uuid.UUID(str(data["saga_id"])),
                str(data["step"]),
                str(data["kind"]),
                ActionOutcome(str(data["outcome"])),
            )
            return
        step, kind = str(data["step"]), str(data["kind"])
        if kind == "action" and step in silent:
            return  # the command, or its reply, lost: no answer ever comes
        refused = kind == "action" and step in refusing
        # One effect per command key, however often the command comes (a retried compensation
        # is a new message with the same key).
        seen = await work.session.scalar(select(effects.c.id).where(effects.c.key == data["key"]))
        if not refused and seen is None:
            await work.session.execute(
                insert(effects).values(command=f"{step}.{kind}", key=str(data["key"]))
            )
        outcome = ActionOutcome.REJECTED if refused else ActionOutcome.SUCCEEDED
        await work.publish_new("saga.reply", {**data, "outcome": outcome.value})

    inbox = Inbox(service.database)
    service.messaging.subscribe(inbox.handler(handle), store=inbox)
    return service, orchestrator


async def run_saga(
    service: Service, orchestrator: SagaOrchestrator
) -> tuple[SagaStatus, list[str]]:
    assert service.database is not None
    async with serve(service.app):
        async with service.database.transaction() as work:
            saga_id = await orchestrator.start(work.session, "ship", {})

        async def ended() -> bool:
            view = await orchestrator.get(saga_id)
            return view is not None and view.status in (
                SagaStatus.COMPLETED,
                SagaStatus.COMPENSATED,
            )

        await eventually(ended, within=20, what="the saga ended")
        view = await orchestrator.get(saga_id)
        async with service.database.transaction() as work:
            done = (await work.session.execute(select(effects.c.command))).scalars().all()
    assert view is not None
    return view.status, sorted(done)


async def test_commands_and_replies_complete_a_saga(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
) -> None:
    service, orchestrator = build(
        make_settings, messaging_settings, database_url, silent=set(), refusing=set()
    )
    status, done = await run_saga(service, orchestrator)
    assert status is SagaStatus.COMPLETED
    assert done == ["label.action", "pack.action"]


async def test_a_refusal_by_reply_compensates_the_steps_before(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
) -> None:
    service, orchestrator = build(
        make_settings, messaging_settings, database_url, silent=set(), refusing={"label"}
    )
    status, done = await run_saga(service, orchestrator)
    assert status is SagaStatus.COMPENSATED
    assert done == ["pack.action", "pack.compensation"]


async def test_a_reply_that_never_comes_times_out_and_compensates(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    database_url: str,
) -> None:
    service, orchestrator = build(
        make_settings, messaging_settings, database_url, silent={"label"}, refusing=set()
    )
    status, done = await run_saga(service, orchestrator)
    assert status is SagaStatus.COMPENSATED
    # The silent step may have acted, so it is compensated too, before the step ahead of it.
    assert done == ["label.compensation", "pack.action", "pack.compensation"]
