"""SIGTERM while messages are in flight: they finish, their acks go out, nothing is lost."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator

import httpx
import pytest

from service_chassis.messaging.settings import MessagingSettings
from service_chassis.testing.brokers import BrokerUnderTest
from service_chassis.testing.servers import RecordingDownstream, ServiceProcess, start_service
from service_chassis.testing.wiring import messaging_environment

from ..conftest import PACKAGE

pytestmark = pytest.mark.integration

EVENTS = 16


def _handled(downstream: RecordingDownstream) -> collections.Counter[str]:
    return collections.Counter(r["idempotency-key"] for r in list(downstream.requests))


def _start(env: dict[str, str], check: str) -> ServiceProcess:
    """The service, once its broker check passes (other checks, e.g. discovery, may not)."""
    service = start_service(PACKAGE, env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        checks = httpx.get(f"{service.base_url}/health/ready").json()["checks"]
        if checks[check][0]["status"] == "pass":
            return service
        time.sleep(0.05)
    service.stop()
    raise AssertionError("the broker check never passed:\n" + "".join(service.lines))


@pytest.fixture
def settings(broker: BrokerUnderTest) -> Iterator[MessagingSettings]:
    settings = broker.settings(concurrency=4, drain_seconds=10.0, ack_wait_seconds=2.0)
    yield settings
    asyncio.run(broker.cleanup(settings))


def test_sigterm_with_messages_in_flight_loses_none(
    broker: BrokerUnderTest, settings: MessagingSettings, downstream: RecordingDownstream
) -> None:
    """The service runs as a real process; its handler calls a slow downstream."""
    downstream.delay = 0.3  # 16 events take over a second: the stop comes mid-way
    env = {
        **messaging_environment(broker.system, settings),
        "DOWNSTREAM_URL": downstream.url,
        "OTEL_TRACES_EXPORTER": "none",
        "LOG_LEVEL": "INFO",
    }
    service = _start(env, f"{broker.system}:connection")
    try:
        published = []
        with httpx.Client(base_url=service.base_url) as client:
            for index in range(EVENTS):
                response = client.post("/events", json={"type": f"n{index}"})
                assert response.status_code == 202, response.text
                published.append(response.json()["id"])
        deadline = time.monotonic() + 10
        while sum(_handled(downstream).values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        exit_code = service.stop()
    assert exit_code == 0, "".join(service.lines)
    before_restart = _handled(downstream)
    assert 0 < sum(before_restart.values()) < EVENTS, "the stop did not catch messages in flight"
    logs = service.logs()
    events = [line["event"] for line in logs]
    # Every message it started, it finished, before the connection closed.
    handled_lines = [i for i, e in enumerate(events) if e == "event handled"]
    assert handled_lines[-1] < events.index("broker disconnected")
    assert len(handled_lines) == events.count("event received") == sum(before_restart.values())
    # A routine stop: no ERROR line and no traceback from the service or its libraries.
    assert [line for line in logs if line["level"] in ("error", "critical")] == []
    assert not [line for line in service.lines if "Traceback" in line]

    restarted = _start(env, f"{broker.system}:connection")
    try:
        deadline = time.monotonic() + 20
        while set(_handled(downstream)) != set(published) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        restarted.stop()
    handled = _handled(downstream)
    assert set(handled) == set(published)  # nothing lost
    assert max(handled.values()) == 1  # and nothing handled twice
