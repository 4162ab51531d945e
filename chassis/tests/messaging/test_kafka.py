"""Kafka: fast checks on FastStream's in-memory TestKafkaBroker, and startup without Kafka.

The in-memory broker runs the real subscriber, middlewares and consumer, but no Kafka client:
it proves the wiring (trace, retries, dead letters), not delivery. Delivery is proven against
librdkafka's mock cluster by the broker-independent tests in this folder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.message import StreamMessage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service_chassis.messaging.consumer import ATTEMPTS_HEADER, REASON_HEADER
from service_chassis.messaging.events import Event
from service_chassis.messaging.kafka import KafkaTransport
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.messaging.transport import subscriber_function, whole_message
from service_chassis.testing.brokers import BrokerUnderTest
from service_chassis.testing.kafka import KafkaBroker
from service_chassis.testing.servers import free_port, serve
from tests.sample.settings import Settings

from .support.app import build_service, running_service


@pytest.fixture
def broker(kafka_broker: BrokerUnderTest) -> BrokerUnderTest:
    """This file's tests are about kafka alone."""
    return kafka_broker


@pytest.fixture
def unit_settings(broker: KafkaBroker) -> MessagingSettings:
    # The transport looks for a reachable server before it starts the broker, which the
    # in-memory broker then replaces: the mock cluster is reachable.
    return broker.settings(max_attempts=3, retry_backoff_seconds=0.0)


async def test_in_memory_the_event_flows_retries_and_stays_in_the_trace(
    unit_settings: MessagingSettings,
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    attempts: list[str] = []

    async def flaky(event: Event) -> None:
        attempts.append(event.type)
        if len(attempts) < 3:
            raise ConnectionError("not yet")

    service = build_service(
        make_settings(), unit_settings, tracer_provider=tracer_provider, handler=flaky
    )
    app, messaging = service.app, service.messaging
    assert messaging is not None
    async with (
        TestKafkaBroker(cast(KafkaTransport, messaging.transport).broker),
        serve(app) as client,
    ):
        response = await client.post("/events", json={"type": "unit"})
        assert response.status_code == 202
    assert attempts == ["unit", "unit", "unit"]
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    server = spans["POST /events"]
    process = spans[f"process {unit_settings.destination}"]
    assert process.kind == SpanKind.CONSUMER
    assert process.context is not None
    assert server.context is not None
    assert process.context.trace_id == server.context.trace_id
    assert [e.name for e in process.events] == ["handler failed", "handler failed"]


async def test_in_memory_an_invalid_body_is_dead_lettered_at_once(
    unit_settings: MessagingSettings,
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
) -> None:
    handled: list[Event] = []
    dead: list[StreamMessage[Any]] = []

    async def handler(event: Event) -> None:
        handled.append(event)

    service = build_service(
        make_settings(), unit_settings, tracer_provider=tracer_provider, handler=handler
    )
    app, messaging = service.app, service.messaging
    assert messaging is not None
    broker = cast(KafkaTransport, messaging.transport).broker

    async def collect(message: StreamMessage[Any]) -> None:
        dead.append(message)

    broker.subscriber(unit_settings.dead_letter_destination, decoder=whole_message)(
        subscriber_function(collect)
    )

    async with TestKafkaBroker(broker), serve(app):
        await broker.publish(b"{not json", unit_settings.destination)
    assert handled == []
    [letter] = dead
    assert letter.body == b"{not json"
    assert letter.headers[REASON_HEADER] == "invalid"
    assert letter.headers[ATTEMPTS_HEADER] == "0"


async def test_started_without_kafka_it_is_alive_and_not_ready(
    make_settings: Callable[..., Settings], tracer_provider: TracerProvider
) -> None:
    settings = MessagingSettings(
        broker_url=f"127.0.0.1:{free_port()}", connect_wait_seconds=0.2, reconnect_seconds=0.2
    )
    async with running_service(
        make_settings(), settings, tracer_provider=tracer_provider
    ) as service:
        ready = await service.client.get("/health/ready")
        live = await service.client.get("/health/live")
        refused = await service.client.post("/events", json={"type": "too.early"})
    assert ready.status_code == 503
    assert ready.json()["checks"]["kafka:connection"][0]["status"] == "fail"
    assert live.status_code == 200
    assert refused.status_code == 503
