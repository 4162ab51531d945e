"""RabbitMQ outages, simulated by cutting a TCP proxy between the service and the server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from service_chassis.messaging.events import Event
from service_chassis.testing.brokers import BrokerUnderTest
from service_chassis.testing.rabbitmq import RabbitBroker
from service_chassis.testing.servers import eventually
from tests.sample.settings import Settings

from .support.app import running_service

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(rabbitmq_broker: BrokerUnderTest) -> BrokerUnderTest:
    """This file's tests are about rabbitmq alone."""
    return rabbitmq_broker


async def _ready_is(client: httpx.AsyncClient, status: int) -> bool:
    return (await client.get("/health/ready")).status_code == status


async def test_readiness_follows_the_connection_and_consuming_resumes(
    make_settings: Callable[..., Settings],
    broker: RabbitBroker,
    tracer_provider: TracerProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        handled.append(event)

    with broker.proxy() as proxy:
        settings = broker.settings(broker_url=broker.via(proxy), reconnect_seconds=0.2)
        try:
            async with running_service(
                make_settings(), settings, tracer_provider=tracer_provider, handler=handler
            ) as service:
                client = service.client
                assert await _ready_is(client, 200)
                await asyncio.to_thread(proxy.cut)
                await eventually(lambda: _ready_is(client, 503), what="503 once cut off")
                ready = await client.get("/health/ready")
                check = ready.json()["checks"]["rabbitmq:connection"][0]
                assert check["status"] == "fail"
                assert check["componentType"] == "datastore"
                assert (await client.get("/health/live")).status_code == 200
                await asyncio.to_thread(proxy.restore)
                await eventually(lambda: _ready_is(client, 200), what="readiness recovered")
                response = await client.post("/events", json={"type": "after.outage"})
                assert response.status_code == 202
                await eventually(lambda: len(handled) == 1, what="consuming resumed")
        finally:
            await broker.cleanup(settings)
    # A routine outage: warnings and an INFO at the end, never an ERROR or a traceback.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r.getMessage() for r in caplog.records if r.exc_info]


async def test_started_without_a_server_it_is_not_ready_then_connects(
    make_settings: Callable[..., Settings],
    broker: RabbitBroker,
    tracer_provider: TracerProvider,
) -> None:
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        handled.append(event)

    with broker.proxy() as proxy:
        proxy.cut()
        settings = broker.settings(
            broker_url=broker.via(proxy), connect_wait_seconds=0.2, reconnect_seconds=0.2
        )
        try:
            async with running_service(
                make_settings(), settings, tracer_provider=tracer_provider, handler=handler
            ) as service:
                client = service.client
                assert await _ready_is(client, 503)
                assert (await client.get("/health/live")).status_code == 200
                refused = await client.post("/events", json={"type": "too.early"})
                assert refused.status_code == 503
                assert refused.headers["content-type"] == "application/problem+json"
                await asyncio.to_thread(proxy.restore)
                await eventually(lambda: _ready_is(client, 200), what="connected at last")
                response = await client.post("/events", json={"type": "on.time"})
                assert response.status_code == 202
                await eventually(lambda: len(handled) == 1, what="the event was consumed")
        finally:
            await broker.cleanup(settings)
