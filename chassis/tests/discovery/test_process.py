"""The service as a real process with Consul discovery, against a stand-in for Consul.

Consul has no package that installs here: ``consul_server.FakeConsul`` implements the agent
and health endpoints the service calls, checking payloads against Consul's documented API.
"""

from __future__ import annotations

import signal
import threading
import time
from urllib.parse import urlsplit

import httpx

from service_chassis.testing.servers import RecordingDownstream, start_service

from ..conftest import PACKAGE
from .consul_server import FakeConsul

DELAY = 1.0  # SHUTDOWN_DELAY_SECONDS


def test_registers_resolves_and_deregisters_before_draining(
    consul: FakeConsul, downstream: RecordingDownstream
) -> None:
    consul.add_instance("inventory", "127.0.0.1", urlsplit(downstream.url).port or 0)
    service = start_service(
        PACKAGE,
        {
            "SERVICE_DISCOVERY": "consul",
            "DOWNSTREAM_URL": "consul://inventory/resource",
            "SHUTDOWN_DELAY_SECONDS": str(DELAY),
            "OTEL_TRACES_EXPORTER": "none",
            "DOWNSTREAM_READ_TIMEOUT": "30",
            "DOWNSTREAM_TIMEOUT_SECONDS": "30",
        },
    )
    answers: list[tuple[int, float]] = []
    try:
        body = consul.wait_for("PUT", "/v1/agent/service/register")[0].body
        assert (body["Address"], body["Port"]) == ("127.0.0.1", urlsplit(service.base_url).port)
        # What Consul's HTTP check will ask answers, and readiness reports the registration.
        ready = httpx.get(body["Check"]["HTTP"], timeout=2)
        assert ready.status_code == 200
        entry = ready.json()["checks"]["consul:registration"][0]
        assert entry["output"].startswith(f"registered {body['ID']}")

        # An accepted request, in flight (through Consul resolution) when the signal comes.
        downstream.delay = DELAY + 1.0

        def call() -> None:
            response = httpx.get(service.base_url + "/downstream", timeout=5)
            answers.append((response.status_code, time.monotonic()))

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        deadline = time.monotonic() + 5
        while not downstream.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        deregistered = consul.wait_for("PUT", "/v1/agent/service/deregister/")[0]
        caller.join(timeout=5)
        code = service.process.wait(timeout=10)
    finally:
        service.stop()
    assert code == 0
    assert deregistered.path.endswith("/" + body["ID"])
    # Out of Consul within the pre-stop delay, before the listener closed, and well before
    # the accepted request finished draining.
    assert deregistered.at - signalled < DELAY
    assert [status for status, _ in answers] == [200]
    assert deregistered.at < answers[0][1]
    assert consul.services.keys() == {"inventory-127.0.0.1-" + str(urlsplit(downstream.url).port)}
