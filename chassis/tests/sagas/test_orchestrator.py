"""The orchestrator against real PostgreSQL: steps in order, compensations in reverse, each in
effect once, the intervention path, metrics and the trace."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from service_chassis.sagas import (
    ActionOutcome,
    SagaDefinition,
    SagaOrchestrator,
    SagaRunner,
    SagaStatus,
    SagaStep,
    StepContext,
    create_saga_metrics,
)
from tests.sagas.participants import Participant

STEPS = ("stock", "payment", "shipping")


def booking(participants: list[Participant], **options: object) -> SagaDefinition:
    defaults: dict[str, object] = {"retry_backoff": timedelta(0), "compensation_attempts": 3}
    return SagaDefinition(
        "place-order",
        [p.step() for p in participants],
        **{**defaults, **options},  # type: ignore[arg-type]
    )


def participants() -> list[Participant]:
    return [Participant(name) for name in STEPS]


async def start(orchestrator: SagaOrchestrator, engine: AsyncEngine) -> str:
    async with engine.begin() as connection:
        saga_id = await orchestrator.start(connection, "place-order", {"order_id": "o-1"})
    return str(saga_id)


async def test_all_steps_succeed_and_each_acts_once(engine: AsyncEngine) -> None:
    parts = participants()
    registry = CollectorRegistry()
    orchestrator = SagaOrchestrator(engine, [booking(parts)], metrics=create_saga_metrics(registry))
    saga_id = await start(orchestrator, engine)

    assert await orchestrator.run_until_idle() == 3

    view = await orchestrator.get(UUID(saga_id))
    assert view is not None
    assert view.status is SagaStatus.COMPLETED
    assert view.data == {
        "order_id": "o-1",
        "stock_id": f"stock-{saga_id}",
        "payment_id": f"payment-{saga_id}",
        "shipping_id": f"shipping-{saga_id}",
    }
    assert [(e.kind, e.step, e.outcome) for e in view.history] == [
        ("started", None, "started"),
        ("action", "stock", "succeeded"),
        ("action", "payment", "succeeded"),
        ("action", "shipping", "succeeded"),
    ]
    for part in parts:
        assert part.held == {saga_id}
        assert part.effects == {"action": 1}
    assert registry.get_sample_value("sagas_started_total", {"saga": "place-order"}) == 1
    assert (
        registry.get_sample_value(
            "sagas_finished_total", {"saga": "place-order", "status": "completed"}
        )
        == 1
    )


@pytest.mark.parametrize("failing", range(len(STEPS)))
@pytest.mark.parametrize("how", ["rejected", "failed"])
async def test_each_step_failing_compensates_the_ones_before_in_reverse(
    engine: AsyncEngine, failing: int, how: str
) -> None:
    parts = participants()
    if how == "rejected":
        parts[failing].reject = True
    else:
        parts[failing].fail_action = True  # acted, then the answer was lost
    orchestrator = SagaOrchestrator(engine, [booking(parts)])
    saga_id = await start(orchestrator, engine)

    await orchestrator.run_until_idle()

    view = await orchestrator.get(UUID(saga_id))
    assert view is not None
    assert view.status is SagaStatus.COMPENSATED
    compensated = [e.step for e in view.history if e.kind == "compensation"]
    # A rejected step took no effect; one that failed without an answer may have.
    last = failing - 1 if how == "rejected" else failing
    assert compensated == [STEPS[i] for i in range(last, -1, -1)]
    for index, part in enumerate(parts):
        assert part.held == set(), part.name
        expected = 1 if index <= last else 0
        assert part.effects["compensation"] == expected, part.name
        assert part.calls["action"] == (1 if index <= failing else 0), part.name


async def test_a_compensation_failing_past_its_attempts_needs_intervention(
    engine: AsyncEngine,
) -> None:
    parts = participants()
    parts[2].reject = True
    parts[0].compensation_failures = 10
    registry = CollectorRegistry()
    orchestrator = SagaOrchestrator(engine, [booking(parts)], metrics=create_saga_metrics(registry))
    saga_id = UUID(await start(orchestrator, engine))

    await orchestrator.run_until_idle()

    view = await orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.NEEDS_INTERVENTION
    assert view.step == "stock"
    assert parts[0].calls["compensation"] == 3
    await orchestrator.refresh_gauges()
    assert registry.get_sample_value("sagas_needing_intervention", {"saga": "place-order"}) == 1
    assert [v.id for v in await orchestrator.list(status=SagaStatus.NEEDS_INTERVENTION)] == [
        saga_id
    ]

    # The operator fixes the participant and retries: compensation resumes where it stopped.
    parts[0].compensation_failures = 0
    await orchestrator.retry(saga_id)
    await orchestrator.run_until_idle()
    view = await orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.COMPENSATED
    assert parts[0].held == set()
    assert parts[1].effects["compensation"] == 1  # not compensated again by the retry
    await orchestrator.refresh_gauges()
    assert registry.get_sample_value("sagas_needing_intervention", {"saga": "place-order"}) == 0


async def test_compensation_retries_wait_their_backoff(engine: AsyncEngine) -> None:
    parts = participants()
    parts[1].reject = True
    parts[0].compensation_failures = 1
    orchestrator = SagaOrchestrator(engine, [booking(parts, retry_backoff=timedelta(seconds=0.3))])
    saga_id = UUID(await start(orchestrator, engine))

    await orchestrator.run_until_idle()
    view = await orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.COMPENSATING  # waiting out the backoff
    assert parts[0].calls["compensation"] == 1

    await asyncio.sleep(0.4)
    await orchestrator.run_until_idle()
    view = await orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.COMPENSATED


async def test_replicas_share_sagas_and_never_run_one_step_twice(engine: AsyncEngine) -> None:
    parts = participants()
    definition = booking(parts)
    replicas = [SagaOrchestrator(engine, [definition]) for _ in range(3)]
    ids = [await start(replicas[0], engine) for _ in range(20)]
    stop = asyncio.Event()
    runners = [asyncio.create_task(r.run(stop, poll_interval=0.05)) for r in replicas]
    try:

        async def all_completed() -> bool:
            views = await replicas[0].list(status=SagaStatus.COMPLETED)
            return len(views) == len(ids)

        deadline = asyncio.get_running_loop().time() + 20
        while not await all_completed():
            assert asyncio.get_running_loop().time() < deadline, "sagas did not complete"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*runners)
    for part in parts:
        assert part.calls["action"] == len(ids), part.name  # no step ran twice
        assert part.held == set(ids)


async def test_steps_continue_the_starting_trace_with_the_saga_id_in_baggage(
    engine: AsyncEngine,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    seen_baggage: list[object] = []
    parts = participants()

    async def observe(context: StepContext) -> None:
        seen_baggage.append(baggage.get_baggage("saga.id"))
        await Participant.act(parts[0], context)

    definition = SagaDefinition("place-order", [SagaStep("stock", observe, parts[0].undo)])
    orchestrator = SagaOrchestrator(engine, [definition], tracer=tracer)
    with tracer.start_as_current_span("POST /orders") as request_span:
        saga_id = await start(orchestrator, engine)
    await orchestrator.run_until_idle()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    step = spans["saga action stock"]
    assert step.context.trace_id == request_span.get_span_context().trace_id
    assert step.parent is not None
    assert step.parent.span_id == request_span.get_span_context().span_id
    assert step.attributes is not None
    assert step.attributes["saga.id"] == saga_id
    assert seen_baggage == [saga_id]
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked into this context


def test_definitions_refuse_duplicates_and_empty() -> None:
    with pytest.raises(ValueError, match="no steps"):
        SagaDefinition("empty", [])
    part = Participant("stock")
    with pytest.raises(ValueError, match="repeats a step name"):
        SagaDefinition("twice", [part.step(), part.step()])


async def test_runner_finishes_the_step_in_flight_before_it_stops(engine: AsyncEngine) -> None:
    parts = participants()
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(context: StepContext) -> None:
        entered.set()
        await release.wait()
        await Participant.act(parts[0], context)

    definition = SagaDefinition("place-order", [SagaStep("stock", slow, parts[0].undo)])
    runner = SagaRunner(SagaOrchestrator(engine, [definition]), poll_interval=0.05)
    await runner.start()
    saga_id = UUID(await start(runner.orchestrator, engine))
    await asyncio.wait_for(entered.wait(), 5)

    stopping = asyncio.create_task(runner.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waits for the step, does not cut it
    release.set()
    await asyncio.wait_for(stopping, 5)

    view = await runner.orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.COMPLETED


async def test_a_compensation_knows_the_key_its_action_was_sent_with(engine: AsyncEngine) -> None:
    keys: dict[str, str] = {}

    async def act(context: StepContext) -> None:
        keys["action"] = context.idempotency_key

    async def undo(context: StepContext) -> None:
        keys["compensation"] = context.idempotency_key
        keys["undoes"] = context.action_key

    refused = Participant("payment", reject=True)
    definition = SagaDefinition("place-order", [SagaStep("stock", act, undo), refused.step()])
    orchestrator = SagaOrchestrator(engine, [definition])
    await start(orchestrator, engine)
    await orchestrator.run_until_idle()

    assert keys["undoes"] == keys["action"]
    assert keys["compensation"] != keys["action"]


async def test_a_reply_moves_the_saga_once_and_a_late_or_repeated_one_changes_nothing(
    engine: AsyncEngine,
) -> None:
    sent: list[str] = []

    async def send(context: StepContext) -> None:
        sent.append(context.message_key)

    step = SagaStep("pack", send, send, reply_timeout=timedelta(minutes=1))
    orchestrator = SagaOrchestrator(engine, [SagaDefinition("ship", [step])])
    async with engine.begin() as connection:
        saga_id = await orchestrator.start(connection, "ship", {})
    await orchestrator.run_until_idle()
    view = await orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.RUNNING  # awaiting the reply
    assert [e.outcome for e in view.history][-1] == "sent"
    assert sent == [f"saga-{saga_id}-pack-action-1"]

    async with engine.begin() as connection:
        wrong_step = await orchestrator.reply(
            connection, saga_id, "label", "action", ActionOutcome.SUCCEEDED
        )
        first = await orchestrator.reply(
            connection, saga_id, "pack", "action", ActionOutcome.SUCCEEDED, {"parcel": "p-1"}
        )
        again = await orchestrator.reply(
            connection, saga_id, "pack", "action", ActionOutcome.SUCCEEDED
        )
    assert (wrong_step, first, again) == (False, True, False)
    view = await orchestrator.get(saga_id)
    assert view is not None
    assert view.status is SagaStatus.COMPLETED
    assert view.data == {"parcel": "p-1"}
    assert await orchestrator.run_until_idle() == 0
