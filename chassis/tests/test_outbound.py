from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service_chassis.testing.servers import RecordingDownstream, serve
from tests.sample.app import create_app
from tests.sample.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def downstream_app(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    downstream: RecordingDownstream,
) -> FastAPI:
    return create_app(make_settings(downstream_url=downstream.url), tracer_provider=tracer_provider)


async def test_trace_and_baggage_continue_into_the_outbound_call(
    downstream_app: FastAPI, downstream: RecordingDownstream, span_exporter: InMemorySpanExporter
) -> None:
    headers = {
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=opaque",
        "baggage": "tenant=acme",
    }
    async with serve(downstream_app) as client:
        response = await client.get("/downstream", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": 200, "body": {"ok": True}}
    seen = downstream.requests[0]
    _, trace_id, parent_id, _ = seen["traceparent"].split("-")
    assert trace_id == TRACE_ID
    assert seen["tracestate"] == "vendor=opaque"
    assert "tenant=acme" in seen["baggage"]
    spans = {span.kind: span for span in span_exporter.get_finished_spans()}
    client_span, server_span = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    call_span = spans[SpanKind.INTERNAL]  # the logical call, around its attempts
    assert format(client_span.context.span_id, "016x") == parent_id
    assert client_span.parent is not None
    assert client_span.parent.span_id == call_span.context.span_id
    assert call_span.parent is not None
    assert call_span.parent.span_id == server_span.context.span_id
    assert server_span.name == "GET /downstream"


async def test_each_attempt_is_measured_by_server_address(
    downstream_app: FastAPI, downstream: RecordingDownstream
) -> None:
    downstream.status = 503
    async with serve(downstream_app) as client:
        response = await client.get("/downstream")
    assert response.status_code == 502
    assert response.json()["downstream_status"] == 503
    registry = downstream_app.state.service.metrics.registry
    labels = {
        "http_request_method": "GET",
        "server_address": "127.0.0.1",
        "http_response_status_code": "503",
        "error_type": "503",
    }
    count = registry.get_sample_value("http_client_request_duration_seconds_count", labels)
    assert count == 3  # the first attempt and two retries


async def test_refused_connection_is_a_502_problem(
    make_settings: Callable[..., Settings], tracer_provider: TracerProvider
) -> None:
    from service_chassis.testing.servers import free_port

    app = create_app(
        make_settings(downstream_url=f"http://127.0.0.1:{free_port()}/"),
        tracer_provider=tracer_provider,
    )
    async with serve(app) as client:
        response = await client.get("/downstream")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:problem:downstream-unavailable"
    registry = app.state.service.metrics.registry
    labels = {
        "http_request_method": "GET",
        "server_address": "127.0.0.1",
        "http_response_status_code": "",
        "error_type": "ConnectError",
    }
    assert registry.get_sample_value("http_client_request_duration_seconds_count", labels) == 3


async def test_slow_downstream_is_a_504_problem(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    downstream: RecordingDownstream,
) -> None:
    downstream.delay = 1.0
    app = create_app(
        make_settings(downstream_url=downstream.url, downstream_read_timeout=0.2),
        tracer_provider=tracer_provider,
    )
    async with serve(app) as client:
        response = await client.get("/downstream")
    assert response.status_code == 504
    assert response.json()["type"] == "urn:problem:downstream-timeout"


async def test_unconfigured_downstream_is_a_503_problem(app: FastAPI) -> None:
    async with serve(app) as client:
        response = await client.get("/downstream")
    assert response.status_code == 503
    assert response.json()["type"] == "urn:problem:downstream-not-configured"


async def test_the_configured_url_is_called_as_it_is(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    downstream: RecordingDownstream,
) -> None:
    app = create_app(
        make_settings(downstream_url=downstream.url + "/items/1"), tracer_provider=tracer_provider
    )
    async with serve(app) as client:
        await client.get("/downstream")
    assert downstream.paths == ["/resource/items/1"]
