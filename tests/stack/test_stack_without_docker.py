"""`scripts/install-stack.sh --run`: the stack without Docker, as observability/README.md says.

Runs the command a user runs, on the compose file's ports, and checks what the README promises:
Jaeger takes OTLP and shows the trace, Prometheus (the shipped config and rules) scrapes Jaeger's
span metrics, Jaeger's Monitor tab reads them back from it, the gateway answers on 8080 and
traces into that Jaeger, and Ctrl-C (here SIGTERM, which the script treats the same) stops
them all.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.net import port_open
from tests.stack.conftest import PROMETHEUS_DIR
from tests.stack.programs import INSTALL_SCRIPT, Jaeger, JaegerPorts, Prometheus, wait_until

# The compose file's ports: one test at a time may hold them.
pytestmark = pytest.mark.xdist_group("standard-ports")
SERVICE = "native-check"


@pytest.fixture(scope="module")
def stack(
    stack_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[str]]:
    state = tmp_path_factory.mktemp("native-stack")
    log = (state / "run.log").open("w")
    proc = subprocess.Popen(
        ["bash", str(INSTALL_SCRIPT), "--run"],
        env={**os.environ, "STACK_STATE_DIR": str(state)},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"--run exited {proc.returncode}:\n{(state / 'run.log').read_text()}")
            return "are up" in (state / "run.log").read_text()

        wait_until("the stack to come up", up, timeout=60)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def jaeger(stack: subprocess.Popen[str]) -> Jaeger:
    return Jaeger(JaegerPorts.standard(), Path("/dev/null"))


def send_span(trace_id: str, status_code: int = 200) -> None:
    now = time.time_ns()
    span = {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "name": "GET /items/{item_id}",
        "kind": 2,
        "startTimeUnixNano": str(now - 5_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [
            {"key": "http.response.status_code", "value": {"intValue": str(status_code)}}
        ],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": SERVICE}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    response = httpx.post("http://localhost:4318/v1/traces", json=body, timeout=5)
    assert response.status_code == 200, response.text


def test_jaeger_takes_otlp_and_shows_the_trace(jaeger: Jaeger) -> None:
    trace_id = secrets.token_hex(16)
    send_span(trace_id)
    spans = wait_until("the span in Jaeger", lambda: jaeger.trace(trace_id), timeout=15)
    assert [(s.service, s.name) for s in spans] == [(SERVICE, "GET /items/{item_id}")]
    assert trace_id in jaeger.search(SERVICE, "GET /items/{item_id}")


def test_prometheus_runs_the_shipped_rules_and_scrapes_jaeger(jaeger: Jaeger) -> None:
    prometheus = Prometheus("http://localhost:9090")
    groups = prometheus.get("/api/v1/rules")["groups"]
    shipped = [
        group["name"]
        for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert sorted(group["name"] for group in groups) == sorted(shipped)

    def jaeger_up() -> bool:
        targets = prometheus.get("/api/v1/targets", state="active")["activeTargets"]
        return any(
            t["labels"]["job"] == "jaeger-spanmetrics" and t["health"] == "up" for t in targets
        )

    wait_until("Prometheus to scrape Jaeger's span metrics", jaeger_up, timeout=40, every=1)


def test_the_monitor_tab_reads_span_metrics_back(jaeger: Jaeger) -> None:
    def calls() -> list[float]:
        send_span(secrets.token_hex(16))  # keep the counter moving
        answer = jaeger.metrics("calls", SERVICE)
        return [
            float(point["gaugeValue"]["doubleValue"])
            for metric in answer.get("metrics") or []
            for point in metric["metricPoints"]
            if point["gaugeValue"]["doubleValue"] not in ("NaN", 0)
        ]

    # Span metrics are flushed every 15 s and scraped every 15 s: a rate needs two scrapes.
    assert wait_until("a call rate in the Monitor tab", calls, timeout=90, every=2)


def test_the_gateway_answers_on_8080_and_traces_into_this_jaeger(jaeger: Jaeger) -> None:
    trace_id = secrets.token_hex(16)
    answer = httpx.get(
        "http://localhost:8080/nowhere",
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        timeout=5,
    )
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["trace_id"] == trace_id
    spans = wait_until("the gateway's span in Jaeger", lambda: jaeger.trace(trace_id), timeout=20)
    assert [(s.service, s.name) for s in spans] == [("gateway", "GET unmatched")]
    # Its own liveness on the management port, which is no route.
    assert httpx.get("http://localhost:2020/health/live", timeout=5).status_code == 200


def test_ctrl_c_stops_them_all(stack: subprocess.Popen[str], jaeger: Jaeger) -> None:
    stack.send_signal(signal.SIGTERM)
    assert stack.wait(timeout=20) == 0
    for port in (4317, 4318, 16686, 9090, 8889, 8080, 2020):
        assert not port_open(port), port
