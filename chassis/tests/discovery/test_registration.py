"""Registration with the Consul agent, against a stand-in for Consul's HTTP API.

Consul has no package that installs here: ``consul_server.FakeConsul`` implements the agent
endpoints the service calls and refuses payloads that Consul's documented API would refuse.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from service_chassis.discovery.registration import Registration, backoff
from service_chassis.discovery.settings import DiscoverySettings
from service_chassis.testing.servers import free_port, serve

from .consul_server import FakeConsul, problems_with_registration


async def _eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _registration_entry(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    entry: dict[str, str] = response.json()["checks"]["consul:registration"][0]
    return entry


async def test_registers_with_the_documented_payload_and_deregisters_on_stop(
    consul: FakeConsul, app_factory: Callable[..., FastAPI]
) -> None:
    app = app_factory(http_port=8123)
    async with serve(app) as client:
        await _eventually(lambda: bool(consul.calls_to("PUT", "/v1/agent/service/register")))
        body = consul.calls_to("PUT", "/v1/agent/service/register")[0].body
        assert problems_with_registration(body) == []
        assert body["Name"] == "sample"
        assert body["ID"] == f"sample-{socket.gethostname()}-8123"
        assert (body["Address"], body["Port"]) == ("127.0.0.1", 8123)
        assert body["Tags"] == ["http"]
        assert body["Meta"] == {
            "version": "0.1.0",
            "owner": "platform-team",
            "environment": "development",
            "metrics_path": "/metrics",
        }
        check = body["Check"]
        assert check["HTTP"] == "http://127.0.0.1:8123/health/ready"
        assert (check["Method"], check["Interval"], check["Timeout"]) == ("GET", "10s", "2s")
        assert check["DeregisterCriticalServiceAfter"] == "10m"
        # The check and the metrics path are real routes of this app.
        assert (await client.get(check["HTTP"].split(":8123", 1)[1])).status_code == 200
        assert (await client.get(body["Meta"]["metrics_path"])).status_code == 200
        entry = await _registration_entry(client)
        assert entry["status"] == "pass"
        assert entry["output"].startswith(f"registered {body['ID']}")
        assert not consul.calls_to("PUT", "/v1/agent/service/deregister/")
    deregistered = consul.calls_to("PUT", "/v1/agent/service/deregister/")
    assert [call.path.rsplit("/", 1)[1] for call in deregistered] == [body["ID"]]
    assert consul.services == {}


async def test_sends_the_acl_token(
    consul: FakeConsul, monkeypatch: pytest.MonkeyPatch, app_factory: Callable[..., FastAPI]
) -> None:
    consul.token = "s3cr3t"
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "s3cr3t")
    app = app_factory()
    async with serve(app):
        await _eventually(lambda: bool(consul.services))
    calls = consul.calls_to("PUT", "/v1/agent/service/")
    assert calls
    assert all(call.headers["x-consul-token"] == "s3cr3t" for call in calls)


async def test_deregisters_as_soon_as_shutdown_begins(
    consul: FakeConsul, app_factory: Callable[..., FastAPI]
) -> None:
    """The stop signal fails readiness; deregistration follows while requests still drain."""
    app = app_factory()
    async with serve(app) as client:
        await _eventually(lambda: bool(consul.services))
        app.state.service.health.shutting_down = True
        await _eventually(lambda: not consul.services)
        # Still serving: only the lifespan's end would stop the app.
        assert (await client.get("/items/1")).status_code == 200
    assert len(consul.calls_to("PUT", "/v1/agent/service/deregister/")) == 1


@pytest.mark.parametrize("failure", ["answers 500", "times out", "is absent"])
async def test_starts_and_serves_while_consul_is_unusable_then_registers(
    failure: str,
    consul: FakeConsul,
    monkeypatch: pytest.MonkeyPatch,
    app_factory: Callable[..., FastAPI],
) -> None:
    if failure == "answers 500":
        consul.fail_status = 500
        reason = "Consul answered 500"
    elif failure == "times out":
        consul.delay = 1.0  # CONSUL_TIMEOUT_SECONDS is 0.3 in these tests
        reason = "did not answer in time"
    else:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", f"127.0.0.1:{free_port()}")
        reason = "is unreachable (ConnectError)"
    app = app_factory()
    async with serve(app) as client:
        assert app.state.service.discovery is not None
        registration: Registration = app.state.service.discovery.registration
        await _eventually(lambda: reason in registration.note)
        assert (await client.get("/health/live")).status_code == 200
        entry = await _registration_entry(client)
        assert entry["status"] == "pass"
        assert "not registered" in entry["output"]
        assert "next try in" in entry["output"]
        assert (await client.get("/items/1")).status_code == 200
        if failure != "is absent":
            register = ("PUT", "/v1/agent/service/register")
            await _eventually(lambda: len(consul.calls_to(*register)) >= 2)
            consul.fail_status, consul.delay = None, 0.0  # Consul is back
            await _eventually(lambda: registration.registered, within=3.0)
            assert (await _registration_entry(client))["output"].startswith("registered")
    if failure == "is absent":
        # Nothing ever reached Consul, so there is nothing to deregister.
        assert "deregister" not in registration.note
    else:
        assert registration.note.startswith("deregistered")


async def test_stopping_is_not_held_up_by_a_hanging_consul(
    consul: FakeConsul, app_factory: Callable[..., FastAPI]
) -> None:
    app = app_factory()
    async with serve(app):
        await _eventually(lambda: bool(consul.services))
        consul.delay = 5.0
        started = time.monotonic()
    # One deregistration attempt, cut off by CONSUL_TIMEOUT_SECONDS (0.3 s here).
    assert time.monotonic() - started < 3.0


async def test_registers_again_when_the_agent_forgets_the_instance(
    consul: FakeConsul, monkeypatch: pytest.MonkeyPatch, app_factory: Callable[..., FastAPI]
) -> None:
    monkeypatch.setenv("CONSUL_RESYNC_SECONDS", "0.1")
    app = app_factory()
    async with serve(app):
        await _eventually(lambda: bool(consul.services))
        consul.services.clear()  # a dev-mode agent restarted, or the check stayed critical
        await _eventually(lambda: bool(consul.services))
    assert len(consul.calls_to("PUT", "/v1/agent/service/register")) == 2


def test_backoff_doubles_up_to_the_cap_with_half_of_it_jittered() -> None:
    def waits(jitter: float) -> list[float]:
        return [backoff(n, initial=0.5, maximum=4, jitter=jitter) for n in range(1, 7)]

    assert waits(1.0) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert waits(0.0) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_advertised_address_is_never_the_wildcard(consul: FakeConsul) -> None:
    with pytest.raises(ValidationError, match="not an address other hosts can reach"):
        DiscoverySettings(service_address="0.0.0.0")
    settings = DiscoverySettings()
    assert settings.advertised_address("0.0.0.0") not in {"0.0.0.0", "::", ""}
    assert settings.advertised_address("10.1.2.3") == "10.1.2.3"
    named = DiscoverySettings(service_address="orders-1.internal")
    assert named.advertised_address("0.0.0.0") == "orders-1.internal"


def test_instance_ids_are_unique_per_instance_and_can_be_set(consul: FakeConsul) -> None:
    settings = DiscoverySettings()
    assert settings.instance_id("orders", 8000) != settings.instance_id("orders", 8001)
    assert DiscoverySettings(service_id="orders-a").instance_id("orders", 8000) == "orders-a"


def test_settings_read_consuls_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "consul.internal:8501")
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "t")
    monkeypatch.setenv("SERVICE_TAGS", "http, blue ,")
    settings = DiscoverySettings()
    assert settings.consul_url == "https://consul.internal:8501"
    assert settings.consul_http_token is not None
    assert settings.consul_http_token.get_secret_value() == "t"
    assert settings.service_tags == ("http", "blue")
    with pytest.raises(ValidationError, match="Consul duration"):
        DiscoverySettings(consul_check_interval="10 seconds")
