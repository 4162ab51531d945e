"""The example events, end to end on a real broker: POST /events, the subscriber consumes the
event and calls the downstream, all in the caller's trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from service_chassis.testing.brokers import BrokerUnderTest, broker_under_test
from service_chassis.testing.servers import RecordingDownstream, eventually, serve
from service_chassis.testing.wiring import messaging_environment

from {{ cookiecutter.__package_name }} import BROKER
from {{ cookiecutter.__package_name }}.app import create_app
from {{ cookiecutter.__package_name }}.settings import Settings

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test(BROKER) as broker:
        yield broker


async def test_a_published_event_is_consumed_and_calls_the_downstream_in_the_same_trace(
    monkeypatch: pytest.MonkeyPatch,
    broker: BrokerUnderTest,
    downstream: RecordingDownstream,
    tracer_provider: TracerProvider,
) -> None:
    settings = broker.settings()
    for name, value in messaging_environment(BROKER, settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOWNSTREAM_URL", downstream.url)
    app = create_app(Settings(otel_traces_exporter="none"), tracer_provider=tracer_provider)
    try:
        async with serve(app) as client:
            response = await client.post(
                "/events",
                json={"type": "item.created", "data": {"id": 1}},
                headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
            )
            assert response.status_code == 202, response.text
            event_id = response.json()["id"]
            await eventually(
                lambda: bool(downstream.requests),
                within=15,
                what="the event reached the downstream",
            )
    finally:
        await broker.cleanup(settings)
    [headers] = downstream.requests
    assert headers["idempotency-key"] == event_id
    assert headers["traceparent"].split("-")[1] == TRACE_ID
