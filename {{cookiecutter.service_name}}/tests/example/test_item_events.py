"""A new item's event goes through the outbox: written in the item's transaction, relayed to
the real broker after the commit, consumed once (the inbox), in the request's trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from service_chassis.database import Database, inbox_table, outbox_table
from service_chassis.testing.brokers import BrokerUnderTest, broker_under_test
from service_chassis.testing.servers import RecordingDownstream, eventually, serve
from service_chassis.testing.wiring import messaging_environment
from sqlalchemy import select

from {{ cookiecutter.__package_name }} import BROKER
from {{ cookiecutter.__package_name }}.app import create_app
from {{ cookiecutter.__package_name }}.settings import Settings

TRACE_ID = "5b8efff798038103d269b633813fc60c"


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test(BROKER) as broker:
        yield broker


async def test_a_new_items_event_is_relayed_from_the_outbox_and_handled_once(
    monkeypatch: pytest.MonkeyPatch,
    broker: BrokerUnderTest,
    downstream: RecordingDownstream,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    settings = broker.settings()
    for name, value in messaging_environment(BROKER, settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOWNSTREAM_URL", downstream.url)
    app = create_app(Settings(otel_traces_exporter="none"), tracer_provider=tracer_provider)
    try:
        async with serve(app) as client:
            created = await client.post(
                "/items",
                json={"name": "announced", "quantity": 2},
                headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
            )
            assert created.status_code == 201, created.text
            await eventually(
                lambda: bool(downstream.requests), within=15, what="the event was handled"
            )
            database: Database = app.state.database
            async with database.transaction() as work:
                [(event_id, sent_at)] = (
                    await work.session.execute(
                        select(outbox_table.c.event_id, outbox_table.c.sent_at).where(
                            outbox_table.c.body.contains(b'"announced"')
                        )
                    )
                ).all()
                handled = (
                    await work.session.execute(
                        select(inbox_table.c.event_id).where(
                            inbox_table.c.event_id == str(event_id)
                        )
                    )
                ).all()
    finally:
        await broker.cleanup(settings)
    assert sent_at is not None
    assert len(handled) == 1
    [headers] = downstream.requests
    assert headers["idempotency-key"] == str(event_id)
    assert headers["traceparent"].split("-")[1] == TRACE_ID
    relayed = [
        span for span in span_exporter.get_finished_spans() if span.kind is SpanKind.PRODUCER
    ]
    assert relayed
    assert all(
        span.context is not None and span.context.trace_id == int(TRACE_ID, 16) for span in relayed
    )
