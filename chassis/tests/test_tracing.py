from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable

import pytest
from fastapi import BackgroundTasks, FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from service_chassis.logs import configure_logging
from service_chassis.testing.otlp_receiver import OtlpReceiver
from service_chassis.testing.servers import RecordingDownstream, serve
from service_chassis.tracing import (
    FastHttpSpanExporter,
    UnknownExporterError,
    build_resource,
    build_span_processors,
    build_tracer_provider,
)
from tests.sample.app import create_app
from tests.sample.settings import Settings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_resource_carries_service_version_environment_and_owner(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    attributes = build_resource(make_settings(environment="staging")).attributes
    assert attributes["service.name"] == "sample"
    assert attributes["service.version"] == "0.1.0"
    assert attributes["service.owner"] == "platform-team"
    assert attributes["deployment.environment"] == "staging"
    assert attributes["deployment.environment.name"] == "staging"


def test_resource_attributes_from_the_environment_win(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.owner=team-b,k8s.pod.name=p-1")
    attributes = build_resource(make_settings()).attributes
    assert attributes["service.owner"] == "team-b"
    assert attributes["k8s.pod.name"] == "p-1"


def test_no_endpoint_means_no_exporter(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert build_span_processors(make_settings(otel_traces_exporter="otlp")) == []


def test_console_and_none_exporters(make_settings: Callable[..., Settings]) -> None:
    assert build_span_processors(make_settings(otel_traces_exporter="none")) == []
    processors = build_span_processors(make_settings(otel_traces_exporter="console"))
    assert len(processors) == 1
    assert isinstance(processors[0], BatchSpanProcessor)


def test_unknown_exporter_is_refused_with_the_choices(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(UnknownExporterError, match="use otlp, console or none"):
        build_span_processors(make_settings(otel_traces_exporter="zipkin"))


def test_sampler_comes_from_the_environment(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = build_tracer_provider(make_settings())
    assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()


def test_default_sampler_is_parent_based(make_settings: Callable[..., Settings]) -> None:
    provider = build_tracer_provider(make_settings())
    assert provider.sampler.get_description().startswith("ParentBased")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_spans_reach_a_real_otlp_receiver(
    make_settings: Callable[..., Settings], otlp_receiver: OtlpReceiver, protocol: str
) -> None:
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    settings = make_settings(
        otel_traces_exporter="otlp",
        otel_exporter_otlp_protocol=protocol,
        otel_exporter_otlp_endpoint=endpoint,
    )
    provider = build_tracer_provider(settings)
    app = create_app(settings, tracer_provider=provider)
    async with serve(app) as client:
        await client.get("/items/1", headers={"traceparent": TRACEPARENT})
        await client.get("/health/live")
    provider.shutdown()
    spans = otlp_receiver.wait_for(1)
    assert [span.name for span in spans] == ["GET /items/{item_id}"]
    span = spans[0]
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "b7ad6b7169203331"
    assert span.kind == 2  # SPAN_KIND_SERVER
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.response.status_code"] == 200
    assert span.service == "sample"
    assert otlp_receiver.resources[0]["service.owner"] == "platform-team"


@pytest.mark.parametrize("operation_spans", [False, True], ids=["observer", "fastapi"])
async def test_server_span_follows_the_http_conventions(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    operation_spans: bool,
) -> None:
    """The lean observer span and FastAPI's own (with operation spans) look the same."""
    app = create_app(
        make_settings(trace_operation_spans=operation_spans), tracer_provider=tracer_provider
    )
    async with serve(app) as client:
        await client.get("/items/1?view=full&page=2", headers={"traceparent": TRACEPARENT})
        await client.get("/health/ready")
    spans = span_exporter.get_finished_spans()
    (server,) = [span for span in spans if span.kind == SpanKind.SERVER]
    assert server.name == "GET /items/{item_id}"
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "b7ad6b7169203331"
    attributes = dict(server.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == "/items/{item_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.path"] == "/items/1"
    assert attributes["url.scheme"] == "http"
    assert attributes["url.query"] == "view=full&page=2"
    operations = {span.name for span in spans if span.kind == SpanKind.INTERNAL}
    assert bool(operations) == operation_spans
    assert all(span.context.trace_id == server.context.trace_id for span in spans)


async def test_server_error_marks_the_span(
    app: FastAPI, span_exporter: InMemorySpanExporter
) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise KeyError("private")

    async with serve(app) as client:
        await client.get("/boom")
    (span,) = span_exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "KeyError"
    assert dict(span.attributes or {})["http.response.status_code"] == 500
    assert "private" not in str(span.to_json())


def test_an_http_exporter_pointed_at_the_grpc_port_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    stream = io.StringIO()
    configure_logging(service="svc", level="INFO", stream=stream)
    grpc_port = otlp_receiver.grpc_endpoint.rsplit(":", 1)[1]
    exporter = FastHttpSpanExporter(endpoint=f"http://127.0.0.1:{grpc_port}/v1/traces")
    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span("one") as span:
        pass
    assert isinstance(span, ReadableSpan)
    for _ in range(2):
        assert exporter.export([span]) == SpanExportResult.FAILURE
    hints = [
        json.loads(line) for line in stream.getvalue().splitlines() if "answers in gRPC" in line
    ]
    assert len(hints) == 1  # once, not per batch
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in hints[0]["event"]
    assert "4318" in hints[0]["event"]


async def test_the_server_span_ends_with_the_response_not_with_work_after_it(
    app: FastAPI, span_exporter: InMemorySpanExporter
) -> None:
    """Background work after the response (and the access log) is not the request's latency:
    the server span must not outlast the caller's span that waits for the response."""

    async def later() -> None:
        await asyncio.sleep(0.3)

    @app.get("/with-background-work")
    async def with_background_work(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(later)
        return {"ok": "yes"}

    async with serve(app) as client:
        assert (await client.get("/with-background-work")).status_code == 200
    (server,) = [s for s in span_exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.end_time is not None
    assert server.start_time is not None
    assert (server.end_time - server.start_time) / 1e9 < 0.25


async def test_connection_attributes_come_with_their_setting(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    headers = {"host": "api.example:8443", "user-agent": "probe/1.0"}
    for enabled in (False, True):
        app = create_app(
            make_settings(trace_connection_attributes=enabled), tracer_provider=tracer_provider
        )
        async with serve(app) as client:
            await client.get("/items/1", headers=headers)
    without, with_them = (dict(s.attributes or {}) for s in span_exporter.get_finished_spans())
    names = (
        "server.address",
        "server.port",
        "client.address",
        "network.protocol.version",
        "user_agent.original",
    )
    assert not set(names) & set(without)
    assert with_them["server.address"] == "api.example"
    assert with_them["server.port"] == 8443
    assert with_them["network.protocol.version"] == "1.1"
    assert with_them["user_agent.original"] == "probe/1.0"
    assert isinstance(with_them["client.address"], str)
    assert with_them["client.address"]


async def test_tracestate_with_a_repeated_key_and_baggage_go_on_as_received(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    downstream: RecordingDownstream,
) -> None:
    """Over HTTP, in and out: the caller's tracestate survives its repeated key, and its
    baggage leaves exactly as it came (the property of k2, the encoded space of k3)."""
    baggage = "k1=v1,k2=v2;prop,k3=a%20b"
    app = create_app(make_settings(downstream_url=downstream.url), tracer_provider=tracer_provider)
    async with serve(app) as client:
        response = await client.get(
            "/downstream",
            headers={"traceparent": TRACEPARENT, "tracestate": "foo=1,foo=1", "baggage": baggage},
        )
    assert response.status_code == 200, response.text
    [sent] = downstream.requests
    assert sent["baggage"] == baggage
    assert sent["tracestate"] == "foo=1"
    assert sent["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    (server,) = [s for s in span_exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.context.trace_state.to_header() == "foo=1"


async def test_client_spans_carry_the_error_class_never_its_message(
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    # A port nothing listens on: every attempt fails to connect.
    app = create_app(
        make_settings(downstream_url="http://127.0.0.1:9/secret-path?token=hunter2"),
        tracer_provider=tracer_provider,
    )
    async with serve(app) as client:
        response = await client.get("/downstream")
    assert response.status_code >= 500
    clients = [s for s in span_exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert clients
    for span in clients:
        assert dict(span.attributes or {})["error.type"] == "ConnectError"
        assert span.status.status_code == StatusCode.ERROR
        assert not span.status.description
        assert not [e for e in span.events if e.name == "exception"]
        assert "Errno" not in span.to_json()
        assert "Traceback" not in span.to_json()


async def test_the_lifespan_flushes_the_spans_of_the_last_requests(
    make_settings: Callable[..., Settings], otlp_receiver: OtlpReceiver
) -> None:
    """Nothing waits in the queue after shutdown: OTEL_BSP_SCHEDULE_DELAY is far away, and
    the spans are there as soon as the app has stopped, before the provider shuts down."""
    settings = make_settings(
        otel_traces_exporter="otlp", otel_exporter_otlp_endpoint=otlp_receiver.http_endpoint
    )
    provider = build_tracer_provider(settings)
    app = create_app(settings, tracer_provider=provider)
    async with serve(app) as client:
        for number in range(3):
            await client.get(f"/items/{number}")
    assert len(otlp_receiver.spans) == 3
    provider.shutdown()


async def test_a_disabled_sdk_makes_and_exports_nothing(
    make_settings: Callable[..., Settings],
    otlp_receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    settings = make_settings(
        otel_traces_exporter="otlp",
        otel_exporter_otlp_endpoint=otlp_receiver.http_endpoint,
        baggage_attributes="tenant",
    )
    provider = build_tracer_provider(settings)
    app = create_app(settings, tracer_provider=provider)
    stream = io.StringIO()
    configure_logging(service="sample", level="INFO", stream=stream)
    async with serve(app) as client:
        response = await client.get(
            "/items/1", headers={"traceparent": TRACEPARENT, "baggage": "tenant=acme"}
        )
    assert response.status_code == 200
    provider.shutdown()
    assert otlp_receiver.spans == []
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [access] = [line for line in lines if line["event"] == "request"]
    # The API without an SDK still continues the caller's trace context (a non-recording span
    # with the parent's ids), so the log line still joins the caller's trace.
    assert access["trace_id"] == TRACEPARENT.split("-")[1]
