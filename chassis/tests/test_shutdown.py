"""Graceful shutdown of the real process, under a steady load on loopback.

A few clients call ``GET /downstream`` (a downstream on loopback that answers slowly) on new
connections, like a load balancer that stops sending once readiness fails. The service gets
SIGTERM while requests are in flight and must: fail readiness at once; keep serving through
``SHUTDOWN_DELAY_SECONDS``; then refuse new connections while the accepted requests finish;
flush their spans to the OTLP receiver; and exit 0. A second signal exits at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from service_chassis.testing.otlp_receiver import OtlpReceiver
from service_chassis.testing.servers import RecordingDownstream, ServiceProcess, start_service

from .conftest import PACKAGE

DELAY = 0.8  # SHUTDOWN_DELAY_SECONDS: far longer than the clients take to see readiness fail
CLIENTS = 4
SERVER_KIND = 2  # SPAN_KIND_SERVER in the OTLP protobuf


@dataclass
class Outcome:
    started: float
    ended: float
    result: int | str  # status code, or the exception's class name


@dataclass
class Load:
    """Clients that stop starting requests once readiness reports the shutdown."""

    base_url: str
    outcomes: list[Outcome] = field(default_factory=list)
    readiness: list[tuple[float, int, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    draining: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._watch_readiness, daemon=True)]
        self.threads += [threading.Thread(target=self._call, daemon=True) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _call(self) -> None:
        # New connection per request: no keep-alive connection is reused across the stop.
        with httpx.Client(base_url=self.base_url, headers={"connection": "close"}) as client:
            for _ in range(100):  # bounded
                if self.draining.is_set() or self.stop.is_set():
                    return
                started = time.monotonic()
                try:
                    result: int | str = client.get("/downstream", timeout=10).status_code
                except httpx.HTTPError as error:
                    result = type(error).__name__
                self.outcomes.append(Outcome(started, time.monotonic(), result))

    def _watch_readiness(self) -> None:
        # Like a load balancer's health check: once the target reports it is stopping (a few
        # times, to be sure), stop sending it anything.
        with httpx.Client(base_url=self.base_url, headers={"connection": "close"}) as client:
            while not self.stop.is_set() and len(self.readiness_stopping()) < 3:
                asked = time.monotonic()
                try:
                    response = client.get("/health/ready", timeout=2)
                except httpx.HTTPError as error:
                    self.readiness.append((asked, 0, False))
                    self.errors.append(f"readiness: {type(error).__name__}")
                    return
                stopping = "lifecycle:shutdown" in response.json()["checks"]
                self.readiness.append((asked, response.status_code, stopping))
                if stopping:
                    self.draining.set()
                time.sleep(0.02)

    def readiness_stopping(self) -> list[tuple[float, int, bool]]:
        return [sample for sample in self.readiness if sample[2]]


def _start(
    otlp_receiver: OtlpReceiver, downstream: RecordingDownstream, delay: float = DELAY
) -> ServiceProcess:
    return start_service(
        PACKAGE,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
            "DOWNSTREAM_URL": downstream.url,
            "SHUTDOWN_DELAY_SECONDS": str(delay),
            "ACCESS_LOG": "false",
            # The slow answers below must not time out (per attempt, or the whole call).
            "DOWNSTREAM_READ_TIMEOUT": "30",
            "DOWNSTREAM_TIMEOUT_SECONDS": "30",
        },
    )


def test_sigterm_under_load_drains_every_accepted_request(
    otlp_receiver: OtlpReceiver, downstream: RecordingDownstream
) -> None:
    downstream.delay = 0.2
    service = _start(otlp_receiver, downstream)
    load = Load(service.base_url)
    try:
        load.start()
        # A steady load for a second, and at least a few answers per client.
        settle = time.monotonic() + 10
        time.sleep(1.0)
        while len(load.outcomes) < CLIENTS * 2 and time.monotonic() < settle:
            time.sleep(0.05)
        # Slow answers from now on, so requests are still in flight after the listener closes.
        downstream.delay = DELAY + 1.5
        seen = len(downstream.requests)
        deadline = time.monotonic() + 5
        while len(downstream.requests) == seen and time.monotonic() < deadline:
            time.sleep(0.005)
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        # After the delay uvicorn closes the listener (it logs "Shutting down" as it does),
        # while the slow requests are still running.
        closed = _wait_for_log(service, "Shutting down", timeout=DELAY + 5)
        time.sleep(0.05)
        try:
            httpx.get(service.base_url + "/health/live", timeout=1)
            refused = "answered"
        except httpx.ConnectError:
            refused = "refused"
        # Accepted by the service, not yet answered: the downstream saw them, the clients wait.
        unanswered = len(downstream.requests) - len(load.outcomes)
        code = service.process.wait(timeout=15)
    finally:
        load.join()
        exit_code = service.stop()
    assert code == exit_code == 0

    # Readiness failed at once, and was seen failing while requests were still accepted.
    after = [(t, status, stopping) for t, status, stopping in load.readiness if t > signalled]
    assert load.errors == []
    assert after, "readiness was not seen failing before the listener closed"
    assert after[0][0] - signalled < DELAY
    assert all(status == 503 and stopping for _, status, stopping in after)

    # New connections were refused while accepted requests were still being answered.
    assert closed - signalled >= DELAY
    assert refused == "refused"
    assert unanswered > 0
    assert any(o.started < signalled and o.ended > signalled + DELAY for o in load.outcomes)

    # No accepted request failed: every call the clients made got its answer.
    assert len(load.outcomes) >= CLIENTS * 2
    assert {o.result for o in load.outcomes} == {200}, load.outcomes
    assert len(downstream.requests) == len(load.outcomes)

    # The spans of every request, the last ones included, were exported before the exit.
    server_spans = [
        s for s in otlp_receiver.spans if s.kind == SERVER_KIND and s.name == "GET /downstream"
    ]
    assert len(server_spans) == len(load.outcomes)
    events = [line["event"] for line in service.logs()]
    assert "service stopped" in events


def test_a_second_signal_exits_at_once(
    otlp_receiver: OtlpReceiver, downstream: RecordingDownstream
) -> None:
    downstream.delay = 10.0
    service = _start(otlp_receiver, downstream, delay=10.0)
    try:
        slow = threading.Thread(
            target=lambda: _ignore_errors(service.base_url + "/downstream"), daemon=True
        )
        slow.start()
        deadline = time.monotonic() + 5
        while not downstream.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        service.process.send_signal(signal.SIGTERM)
        assert httpx.get(service.base_url + "/health/ready", timeout=1).status_code == 503
        service.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = service.process.wait(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        service.stop()
    # Neither the delay nor the in-flight request (10 s each) was waited for.
    assert elapsed < 2.0
    assert code == 128 + signal.SIGTERM


def test_the_grace_period_bounds_the_drain(
    otlp_receiver: OtlpReceiver, downstream: RecordingDownstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request slower than SHUTDOWN_GRACE_SECONDS is cut off; the process still exits 0."""
    monkeypatch.setenv("SHUTDOWN_GRACE_SECONDS", "1")
    downstream.delay = 10.0
    service = _start(otlp_receiver, downstream, delay=0)
    try:
        slow = threading.Thread(
            target=lambda: _ignore_errors(service.base_url + "/downstream"), daemon=True
        )
        slow.start()
        deadline = time.monotonic() + 5
        while not downstream.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(timeout=8)
        elapsed = time.monotonic() - started
    finally:
        service.stop()
    assert code == 0
    assert 1.0 <= elapsed < 6.0  # the grace, the rest of the shutdown; not the 10 s request


def test_sigint_stops_gracefully_too(
    otlp_receiver: OtlpReceiver, downstream: RecordingDownstream
) -> None:
    service = _start(otlp_receiver, downstream, delay=0)
    assert httpx.get(service.base_url + "/downstream", timeout=5).status_code == 200
    assert service.stop(signal.SIGINT) == 0
    assert "service stopped" in [line["event"] for line in service.logs()]


def _ignore_errors(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=10)


def _wait_for_log(service: ServiceProcess, event: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(f'"{event}"' in line for line in list(service.lines)):
            return time.monotonic()
        time.sleep(0.005)
    raise AssertionError(f"no {event!r} in the service's log:\n" + "".join(service.lines))
