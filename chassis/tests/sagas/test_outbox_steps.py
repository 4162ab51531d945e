"""On the service's Database, a transition is a unit of work: a command a step publishes goes
through the outbox in the same transaction as the saga's new state, or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from service_chassis.database import CHASSIS_METADATA, Database, DatabaseSettings, outbox_table
from service_chassis.database.unit_of_work import OutboxWriter
from service_chassis.messaging.events import Event, NewEvent
from service_chassis.sagas import (
    SagaDefinition,
    SagaOrchestrator,
    SagaStatus,
    SagaStep,
    StepContext,
    metadata,
)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def database(database_url: str, exporter: InMemorySpanExporter) -> AsyncIterator[Database]:
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    database = Database(
        DatabaseSettings.for_url(url, pool_size=2, max_overflow=1),
        service_name="saga-test",
        tracer_provider=provider,
        registry=CollectorRegistry(),
    )
    database.transactions.outbox = OutboxWriter(
        encode=Event.to_bytes, destination="commands", written=lambda: None
    )
    async with database.engine.begin() as connection:
        await connection.run_sync(CHASSIS_METADATA.create_all)
        await connection.run_sync(metadata.create_all)
    yield database
    await database.stop()


def command(context: StepContext, kind: str) -> Event:
    new = NewEvent(type=f"stock.{kind}", data={"saga_id": str(context.saga_id)})
    return Event.create(new, idempotency_key=context.idempotency_key)


async def outbox_types(database: Database) -> list[str]:
    async with database.engine.connect() as connection:
        rows = (
            await connection.execute(select(outbox_table.c.body).order_by(outbox_table.c.position))
        ).all()
    return [Event.model_validate_json(row.body).type for row in rows]


async def test_a_command_commits_with_the_transition(database: Database) -> None:
    async def reserve(context: StepContext) -> None:
        assert context.work is not None
        await context.work.publish(command(context, "reserve"))

    orchestrator = SagaOrchestrator(database, [SagaDefinition("s", [SagaStep("stock", reserve)])])
    async with database.transaction() as work:
        saga_id = await orchestrator.start(work.session, "s", {})
    await orchestrator.run_until_idle()

    view = await orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.COMPLETED
    assert await outbox_types(database) == ["stock.reserve"]


async def test_a_transition_that_does_not_commit_sends_no_command(database: Database) -> None:
    attempts: list[UUID] = []

    async def reserve_then_crash(context: StepContext) -> None:
        assert context.work is not None
        await context.work.publish(command(context, "reserve"))
        attempts.append(context.saga_id)
        if len(attempts) == 1:
            # The transaction dies with the command in it (a crash, a lost connection).
            raise SystemExit("process ends mid-transition")

    orchestrator = SagaOrchestrator(
        database, [SagaDefinition("s", [SagaStep("stock", reserve_then_crash)])]
    )
    async with database.transaction() as work:
        await orchestrator.start(work.session, "s", {})
    with pytest.raises(SystemExit):
        await orchestrator.advance()
    assert await outbox_types(database) == []

    await orchestrator.run_until_idle()  # the restarted orchestrator runs the step again
    assert await outbox_types(database) == ["stock.reserve"]


async def test_polling_makes_no_trace_and_a_steps_statements_join_the_sagas(
    database: Database, exporter: InMemorySpanExporter
) -> None:
    async def reserve(context: StepContext) -> None:
        assert context.work is not None
        await context.work.publish(command(context, "reserve"))

    orchestrator = SagaOrchestrator(database, [SagaDefinition("s", [SagaStep("stock", reserve)])])
    exporter.clear()
    assert await orchestrator.advance() is False
    await orchestrator.refresh_gauges()
    assert exporter.get_finished_spans() == ()

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /orders") as request:
        async with database.transaction() as work:
            await orchestrator.start(work.session, "s", {})
    exporter.clear()
    await orchestrator.run_until_idle()
    spans = exporter.get_finished_spans()
    assert spans, "the step's statements were not traced"
    trace_id = request.get_span_context().trace_id
    assert {span.context.trace_id for span in spans} == {trace_id}
