"""``consul://`` targets resolved through a stand-in for Consul's health API.

Consul has no package that installs here: ``consul_server.FakeConsul`` answers
``GET /v1/health/service/:service`` in the shape Consul documents (Node, Service, Checks),
honouring ``passing=true``. The instances behind it are real HTTP servers on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service_chassis import Downstream, Service
from service_chassis.discovery.consul import ConsulAgent
from service_chassis.discovery.resolver import (
    ConsulResolver,
    ResolvingTransport,
    is_consul_url,
)
from service_chassis.discovery.settings import DiscoverySettings
from service_chassis.testing.servers import free_port, serve
from tests.sample.example.events import ExampleHandler
from tests.sample.settings import Settings

from .consul_server import FakeConsul
from .instances import ServiceInstance, run_instances

LOOKUP = ("GET", "/v1/health/service/inventory")
PAYMENTS = Downstream("payments")


@pytest.fixture
def instances() -> Iterator[list[ServiceInstance]]:
    with run_instances("a", "b", "c") as running:
        yield running


class Observed(httpx.AsyncBaseTransport):
    """Notes the port of each attempt, then sends it on through the real connection pool."""

    def __init__(self) -> None:
        self.pool = httpx.AsyncHTTPTransport()
        self.ports: list[int | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.ports.append(request.url.port)
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        await self.pool.aclose()


def resolving_client(
    observed: Observed, *, ttl: float = 5.0, failed_for: float = 10.0
) -> httpx.AsyncClient:
    resolver = ConsulResolver(ConsulAgent(DiscoverySettings()), ttl=ttl, failed_for=failed_for)
    return httpx.AsyncClient(
        transport=ResolvingTransport(observed, resolver), base_url="consul://inventory", timeout=2
    )


async def test_downstream_by_consul_name_goes_to_passing_instances_in_turn(
    consul: FakeConsul,
    instances: list[ServiceInstance],
    app_factory: Callable[..., FastAPI],
    span_exporter: InMemorySpanExporter,
) -> None:
    a, b, c = instances
    consul.add_instance("inventory", "127.0.0.1", a.port)
    consul.add_instance("inventory", "127.0.0.1", b.port)
    consul.add_instance("inventory", "127.0.0.1", c.port, status="critical")
    app = app_factory(downstream_url="consul://inventory/stock")
    async with serve(app) as client:
        answers = [await client.get("/downstream") for _ in range(10)]
        metrics = (await client.get("/metrics")).text
    assert [r.status_code for r in answers] == [200] * 10
    assert sorted(r.json()["body"]["instance"] for r in answers) == ["a"] * 5 + ["b"] * 5
    assert (len(a.requests), len(b.requests), len(c.requests)) == (5, 5, 0)
    assert {r[":path"] for r in a.requests} == {"/stock"}
    assert {r["host"] for r in a.requests} == {"inventory"}
    # One lookup for all ten calls (the TTL is 5 s), for passing instances only.
    lookups = consul.calls_to(*LOOKUP)
    assert len(lookups) == 1
    assert lookups[0].query == {"passing": ["true"]}
    # Spans and metrics name the service; the span also says which instance answered.
    assert 'server_address="inventory"' in metrics
    client_spans = [s for s in span_exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(client_spans) == 10
    attributes = client_spans[0].attributes or {}
    url = attributes.get("url.full", attributes.get("http.url"))
    assert str(url).startswith("consul://inventory/stock")
    assert attributes["network.peer.port"] in {a.port, b.port}


async def test_instance_lists_are_cached_for_the_ttl_and_looked_up_once_at_a_time(
    consul: FakeConsul,
) -> None:
    now = [0.0]
    resolver = ConsulResolver(
        ConsulAgent(DiscoverySettings()), ttl=5, failed_for=10, clock=lambda: now[0]
    )
    consul.add_instance("inventory", "127.0.0.1", 1001)
    consul.delay = 0.1
    first = await asyncio.gather(*(resolver.instances("inventory") for _ in range(20)))
    assert len(consul.calls_to(*LOOKUP)) == 1
    assert {len(found) for found in first} == {1}
    consul.delay = 0.0
    consul.add_instance("inventory", "127.0.0.1", 1002)
    now[0] = 4.9
    assert len(await resolver.instances("inventory")) == 1
    now[0] = 5.1
    assert len(await resolver.instances("inventory")) == 2
    assert len(consul.calls_to(*LOOKUP)) == 2
    await resolver.aclose()


async def test_an_instance_that_refuses_connections_is_skipped(
    consul: FakeConsul, instances: list[ServiceInstance]
) -> None:
    dead = free_port()  # nothing listens there: connections are refused
    consul.add_instance("inventory", "127.0.0.1", dead)
    consul.add_instance("inventory", "127.0.0.1", instances[0].port)
    observed = Observed()
    async with resolving_client(observed) as client:
        answers = [await client.get("/") for _ in range(6)]
    assert [r.status_code for r in answers] == [200] * 6
    # Tried once, then passed over for CONSUL_FAILED_INSTANCE_SECONDS.
    assert observed.ports.count(dead) == 1
    assert observed.ports.count(instances[0].port) == 6


async def test_when_every_instance_refuses_the_call_fails_after_trying_each_once(
    consul: FakeConsul,
) -> None:
    dead = [free_port(), free_port()]
    for port in dead:
        consul.add_instance("inventory", "127.0.0.1", port)
    observed = Observed()
    async with resolving_client(observed) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")
    assert sorted(p for p in observed.ports if p is not None) == sorted(dead)


async def test_no_passing_instance_is_a_502_problem(
    consul: FakeConsul, instances: list[ServiceInstance], app_factory: Callable[..., FastAPI]
) -> None:
    consul.add_instance("inventory", "127.0.0.1", instances[0].port, status="critical")
    app = app_factory(downstream_url="consul://inventory")
    async with serve(app) as client:
        response = await client.get("/downstream")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert "ConnectError" in response.json()["detail"]
    assert instances[0].requests == []


@pytest.mark.parametrize("failure", ["answers 500", "times out", "is absent"])
async def test_consul_failing_during_resolution(
    failure: str,
    consul: FakeConsul,
    instances: list[ServiceInstance],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cold: the call fails fast as unreachable. Warm: the last instance list keeps serving."""
    consul.add_instance("inventory", "127.0.0.1", instances[0].port)
    observed = Observed()
    async with resolving_client(observed, ttl=0) as warm:
        assert (await warm.get("/")).status_code == 200
        if failure == "answers 500":
            consul.fail_status = 500
        elif failure == "times out":
            consul.delay = 1.0  # CONSUL_TIMEOUT_SECONDS is 0.3 in these tests
        else:
            monkeypatch.setenv("CONSUL_HTTP_ADDR", f"127.0.0.1:{free_port()}")
        assert (await warm.get("/")).status_code == 200
        assert (await warm.get("/")).status_code == 200
    async with resolving_client(Observed()) as cold:
        started = time.monotonic()
        with pytest.raises(httpx.ConnectError, match="cannot resolve 'inventory'"):
            await cold.get("/")
        assert time.monotonic() - started < 2.0  # CONSUL_TIMEOUT_SECONDS is 0.3
    assert len(instances[0].requests) == 3


async def test_other_urls_are_not_resolved(
    consul: FakeConsul, instances: list[ServiceInstance]
) -> None:
    assert is_consul_url("consul://inventory/stock")
    assert is_consul_url("consul+https://inventory")
    assert not is_consul_url("http://inventory:8000")
    assert not is_consul_url(None)
    observed = Observed()
    async with resolving_client(observed) as client:
        response = await client.get(f"http://127.0.0.1:{instances[1].port}/direct")
    assert response.json() == {"instance": "b"}
    assert consul.calls_to("GET", "/v1/health/") == []


async def test_every_declared_downstream_resolves_consul_names_with_one_client_each(
    consul: FakeConsul,
    instances: list[ServiceInstance],
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second downstream (not the example's) resolves ``consul://`` too, and with messaging
    on, the subscriber and the routes share each downstream's one client."""
    a, b, _ = instances
    consul.add_instance("inventory", "127.0.0.1", a.port)
    consul.add_instance("payments", "127.0.0.1", b.port)
    monkeypatch.setenv("DOWNSTREAM_URL", "consul://inventory/stock")
    monkeypatch.setenv("PAYMENTS_URL", "consul://payments/charges")
    monkeypatch.setenv("MESSAGING_ENABLED", "true")
    # A broker address where nothing listens: this test is about the clients, not the broker.
    monkeypatch.setenv("BROKER_URL", f"nats://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MESSAGING_CONNECT_WAIT_SECONDS", "0")
    settings = make_settings(http_host="127.0.0.1", service_discovery="consul")
    service = Service(settings, tracer_provider=tracer_provider, downstreams=(PAYMENTS,))
    service.install_package("tests.sample.example")
    assert service.messaging is not None
    assert service.messaging.consumer is not None
    handler = service.messaging.consumer.handler
    assert isinstance(handler, ExampleHandler)
    assert handler.downstream is service.downstreams["downstream"]
    async with serve(service.app) as client:
        answer = await service.downstreams["payments"].get("")
        relayed = await client.get("/downstream")
        metrics = (await client.get("/metrics")).text
    assert answer.status_code == 200
    assert answer.json()["instance"] == "b"
    assert relayed.json()["body"]["instance"] == "a"
    assert metrics.count('circuit_breaker_state{name="downstream"}') == 1
    assert metrics.count('circuit_breaker_state{name="payments"}') == 1
