"""``GET /downstream`` when the downstream is healthy, slow, failing, flapping, saturated or
gone: what the service's caller gets (problem details), and what ``/metrics`` and the spans
show. The downstream is a real server on loopback; the service runs in process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from service_chassis import Service
from service_chassis.testing.servers import free_port, serve
from tests.sample.app import create_app
from tests.sample.example.downstream import DOWNSTREAM
from tests.sample.settings import Settings

from .conftest import knobs
from .faults import OK, Fault, FaultyDownstream, problem

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def make_app(
    make_settings: Callable[..., Settings], tracer_provider: TracerProvider
) -> Callable[..., FastAPI]:
    def make(url: str, **overrides: Any) -> FastAPI:
        service = Service(make_settings(), tracer_provider=tracer_provider)
        service.downstreams.declare(DOWNSTREAM, url=url, **knobs(**overrides))
        service.install_package("tests.sample.example")
        return service.app

    return make


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def series(metric: str, /, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return metric, frozenset(labels.items())


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == type_
    assert body["status"] == status
    assert body["instance"] == "/downstream"
    assert body["downstream"] == DOWNSTREAM.name
    return body


async def test_healthy(
    make_app: Callable[..., FastAPI],
    faulty: FaultyDownstream,
    span_exporter: InMemorySpanExporter,
) -> None:
    async with serve(make_app(faulty.url)) as client:
        response = await client.get("/downstream")
        metrics = await scrape(client)
    assert response.status_code == 200
    assert response.json() == {"status": 200, "body": {"ok": True}}
    assert metrics[series("circuit_breaker_state", name=DOWNSTREAM.name)] == 0
    spans = {span.kind: span for span in span_exporter.get_finished_spans()}
    server, call, attempt = spans[SpanKind.SERVER], spans[SpanKind.INTERNAL], spans[SpanKind.CLIENT]
    assert call.name == "downstream GET"
    assert call.parent is not None
    assert call.parent.span_id == server.context.span_id
    assert attempt.parent is not None
    assert attempt.parent.span_id == call.context.span_id


async def test_slow_honours_the_callers_deadline_header(
    make_app: Callable[..., FastAPI], faulty: FaultyDownstream
) -> None:
    """The service's own timeout is 5 s; the caller says it waits 0.3 s: 504 at 0.3 s."""
    faulty.script(then=Fault(delay=5.0))
    async with serve(make_app(faulty.url, timeout_seconds=5.0)) as client:
        started = time.monotonic()
        response = await client.get("/downstream", headers={"X-Request-Timeout": "0.3"})
        elapsed = time.monotonic() - started
    assert_problem(response, 504, "urn:problem:downstream-timeout")
    assert 0.3 <= elapsed < 0.4
    assert float(faulty.requests[0].headers["x-request-timeout"]) <= 0.3


async def test_failing_is_a_502_with_the_downstream_status_and_type_but_not_its_text(
    make_app: Callable[..., FastAPI], faulty: FaultyDownstream
) -> None:
    faulty.script(then=problem(500, "urn:problem:ledger-locked", "table ledger is locked"))
    async with serve(make_app(faulty.url)) as client:
        response = await client.get("/downstream")
    body = assert_problem(response, 502, "urn:problem:downstream-unavailable")
    assert body["downstream_status"] == 500
    assert body["downstream_type"] == "urn:problem:ledger-locked"
    assert "ledger is locked" not in response.text
    assert body["trace_id"]
    assert faulty.count == 1  # 500 is not worth a retry


async def test_unavailable_is_retried_and_counted(
    make_app: Callable[..., FastAPI], faulty: FaultyDownstream
) -> None:
    faulty.script(Fault(status=503), Fault(status=503), then=OK)
    async with serve(make_app(faulty.url)) as client:
        response = await client.get("/downstream")
        metrics = await scrape(client)
    assert response.status_code == 200
    assert faulty.count == 3
    retries = series("outbound_retries_total", name=DOWNSTREAM.name, reason="status_503")
    assert metrics[retries] == 2


async def test_flapping_opens_the_breaker_which_closes_once_it_recovers(
    make_app: Callable[..., FastAPI], faulty: FaultyDownstream
) -> None:
    faulty.script(then=Fault(status=500))
    app = make_app(
        faulty.url, retry_max_attempts=1, breaker_minimum_calls=3, breaker_open_seconds=0.3
    )
    async with serve(app) as client:
        statuses = [(await client.get("/downstream")).status_code for _ in range(3)]
        assert statuses == [502, 502, 502]
        reached = faulty.count
        rejected = await client.get("/downstream")
        assert faulty.count == reached  # the open breaker kept the call away
        body = assert_problem(rejected, 503, "urn:problem:downstream-circuit-open")
        assert body["attempts"] == 0
        assert rejected.headers["retry-after"] == "1"
        opened = await scrape(client)

        faulty.script(then=OK)
        await asyncio.sleep(0.35)
        recovered = [(await client.get("/downstream")).status_code for _ in range(3)]
        closed = await scrape(client)
    assert recovered == [200, 200, 200]
    assert opened[series("circuit_breaker_state", name=DOWNSTREAM.name)] == 1
    assert opened[series("circuit_breaker_rejections_total", name=DOWNSTREAM.name)] == 1
    to_open = series(
        "circuit_breaker_transitions_total",
        name=DOWNSTREAM.name,
        from_state="closed",
        to_state="open",
    )
    assert opened[to_open] == 1
    assert closed[series("circuit_breaker_state", name=DOWNSTREAM.name)] == 0
    to_closed = series(
        "circuit_breaker_transitions_total",
        name=DOWNSTREAM.name,
        from_state="half_open",
        to_state="closed",
    )
    assert closed[to_closed] == 1


async def test_saturated_rejects_the_excess_with_503(
    make_app: Callable[..., FastAPI], faulty: FaultyDownstream
) -> None:
    faulty.script(then=Fault(delay=0.3))
    app = make_app(faulty.url, bulkhead_max_concurrent=2, bulkhead_max_wait_seconds=0.02)
    async with serve(app) as client:
        responses = await asyncio.gather(*(client.get("/downstream") for _ in range(6)))
        metrics = await scrape(client)
    assert faulty.peak == 2
    assert sorted(r.status_code for r in responses) == [200, 200, 503, 503, 503, 503]
    busy = next(r for r in responses if r.status_code == 503)
    assert_problem(busy, 503, "urn:problem:downstream-busy")
    assert metrics[series("bulkhead_rejections_total", name=DOWNSTREAM.name)] == 4


async def test_gone_is_a_502(make_app: Callable[..., FastAPI]) -> None:
    async with serve(make_app(f"http://127.0.0.1:{free_port()}/")) as client:
        response = await client.get("/downstream")
    body = assert_problem(response, 502, "urn:problem:downstream-unavailable")
    assert body["error_type"] == "ConnectError"
    assert body["attempts"] == 3


async def test_the_example_downstream_reads_its_knobs_from_the_environment(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    faulty: FaultyDownstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOWNSTREAM_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("DOWNSTREAM_RETRY_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("DOWNSTREAM_BREAKER_MINIMUM_CALLS", "7")
    monkeypatch.setenv("DOWNSTREAM_BULKHEAD_MAX_CONCURRENT", "4")
    app = create_app(make_settings(downstream_url=faulty.url), tracer_provider=tracer_provider)
    downstream = app.state.service.downstreams[DOWNSTREAM.name]
    assert downstream.timeout == 1.5
    assert downstream.retry.max_attempts == 5
    assert downstream.breaker.config.minimum_calls == 7
    assert downstream.bulkhead.max_concurrent == 4
    async with serve(app) as client:
        assert (await client.get("/downstream")).status_code == 200


async def test_a_post_is_relayed_once_unless_the_caller_makes_it_idempotent(
    make_app: Callable[..., FastAPI], faulty: FaultyDownstream
) -> None:
    faulty.script(Fault(status=503), then=Fault(status=202, body=b'{"accepted": true}'))
    async with serve(make_app(faulty.url)) as client:
        refused = await client.post("/downstream", json={"order": 7})
        assert faulty.count == 1  # the 503 was not retried: a POST may not be safe to repeat
        faulty.script(Fault(status=503), then=Fault(status=202, body=b'{"accepted": true}'))
        relayed = await client.post(
            "/downstream", json={"order": 7}, headers={"Idempotency-Key": "order-7"}
        )
    body = assert_problem(refused, 502, "urn:problem:downstream-unavailable")
    assert body["downstream_status"] == 503
    assert relayed.status_code == 200
    assert relayed.json() == {"status": 202, "body": {"accepted": True}}
    retried = faulty.requests[1:]
    assert [seen.method for seen in retried] == ["POST", "POST"]
    assert all(seen.headers["idempotency-key"] == "order-7" for seen in retried)


@pytest.mark.parametrize(
    "body",
    [b'{"v": NaN}', b'{"v": Infinity}', b'{"k": "\\ud800"}'],
    ids=["nan", "inf", "surrogate"],
)
async def test_a_body_json_cannot_carry_is_a_422_not_a_500(
    make_app: Callable[..., FastAPI], faulty: FaultyDownstream, body: bytes
) -> None:
    async with serve(make_app(faulty.url)) as client:
        response = await client.post(
            "/downstream", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == "urn:problem:not-json"
    assert "cannot be sent on" in problem["detail"]
    assert faulty.count == 0  # nothing half-encoded reached the downstream
