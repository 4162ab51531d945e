"""NATS outages: readiness follows the server, and the service reconnects by itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from service_chassis.messaging.events import Event
from service_chassis.testing.brokers import BrokerUnderTest
from service_chassis.testing.nats import NatsBroker, NatsServer
from service_chassis.testing.servers import eventually
from tests.sample.settings import Settings

from .support.app import running_service

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(nats_broker: BrokerUnderTest) -> BrokerUnderTest:
    """This file's tests are about nats alone."""
    return nats_broker


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server this test may stop: the session's stays up for the other tests."""
    server = NatsServer(tmp_path / "store")
    yield server
    server.stop()


async def _ready(client: httpx.AsyncClient) -> int:
    return (await client.get("/health/ready")).status_code


async def _ready_is(client: httpx.AsyncClient, status: int) -> bool:
    return await _ready(client) == status


async def test_readiness_follows_the_server_and_consuming_resumes(
    make_settings: Callable[..., Settings],
    broker: NatsBroker,
    own_server: NatsServer,
    tracer_provider: TracerProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    own_server.start()
    settings = broker.settings(broker_url=own_server.url, reconnect_seconds=0.2)
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        handled.append(event)

    async with running_service(
        make_settings(), settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        client = service.client
        assert await _ready(client) == 200
        await asyncio.to_thread(own_server.stop)
        await eventually(
            lambda: _ready_is(client, 503), what="readiness turned 503 with the server gone"
        )
        check = (await client.get("/health/ready")).json()["checks"]["nats:connection"][0]
        assert check["status"] == "fail"
        assert check["componentType"] == "datastore"
        assert (await client.get("/health/live")).status_code == 200
        await asyncio.to_thread(own_server.start)
        await eventually(lambda: _ready_is(client, 200), what="readiness recovered")
        response = await client.post("/events", json={"type": "after.outage"})
        assert response.status_code == 202
        await eventually(lambda: len(handled) == 1, what="consuming resumed")
    # A routine outage: warnings and an INFO at the end, never an ERROR or a traceback.
    broker_records = [r for r in caplog.records if r.name.startswith("service_chassis")]
    assert not [r.getMessage() for r in broker_records if r.levelno >= logging.ERROR]
    assert not [r.getMessage() for r in broker_records if r.exc_info]


async def test_started_without_a_server_it_is_not_ready_then_connects(
    make_settings: Callable[..., Settings],
    broker: NatsBroker,
    own_server: NatsServer,
    tracer_provider: TracerProvider,
) -> None:
    settings = broker.settings(
        broker_url=own_server.url, connect_wait_seconds=0.2, reconnect_seconds=0.2
    )
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        handled.append(event)

    async with running_service(
        make_settings(), settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        client = service.client
        assert await _ready(client) == 503
        assert (await client.get("/health/live")).status_code == 200
        refused = await client.post("/events", json={"type": "too.early"})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        await asyncio.to_thread(own_server.start)
        await eventually(lambda: _ready_is(client, 200), what="connected once the server came")
        response = await client.post("/events", json={"type": "on.time"})
        assert response.status_code == 202
        await eventually(lambda: len(handled) == 1, what="the event was consumed")


async def test_an_error_answer_means_not_published_even_after_the_server_returns(
    make_settings: Callable[..., Settings],
    broker: NatsBroker,
    own_server: NatsServer,
    tracer_provider: TracerProvider,
) -> None:
    own_server.start()
    settings = broker.settings(broker_url=own_server.url, reconnect_seconds=0.2)
    handled: list[str] = []

    async def handler(event: Event) -> None:
        handled.append(event.type)

    async with running_service(
        make_settings(), settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        client = service.client
        await asyncio.to_thread(own_server.stop)
        await eventually(lambda: _ready_is(client, 503), what="the server is seen gone")
        started = asyncio.get_running_loop().time()
        refused = [
            await client.post("/events", json={"type": f"during.outage.{n}"}) for n in range(5)
        ]
        took = asyncio.get_running_loop().time() - started
        assert [r.status_code for r in refused] == [503] * 5
        assert all(r.headers["retry-after"] == "1" for r in refused)
        assert took < 2.5  # at once, not after each publish's 5 s timeout
        await asyncio.to_thread(own_server.start)
        await eventually(lambda: _ready_is(client, 200), what="readiness recovered")
        assert (await client.post("/events", json={"type": "after"})).status_code == 202
        await eventually(lambda: "after" in handled, what="the later event was handled")
        await asyncio.sleep(1.0)  # room for anything buffered to turn up
    assert handled == ["after"]
