"""Direct spans against the SDK's: for arbitrary operations, limits, parents and samplers, the
bytes exported are those of the SDK's own span, whether the span stayed direct or turned
lean on the way."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    SpanContext,
    TraceFlags,
)

from service_chassis.direct_spans import DirectSpan, DirectTracer, direct_tracer
from service_chassis.lean_spans import LeanTracer, lean_tracer
from service_chassis.settings import ServiceSettings
from service_chassis.span_encoding import EncodedSpan, SpanEncoder
from service_chassis.tracing import (
    EncodingBatchSpanProcessor,
    build_tracer_provider,
    service_tracer,
)

from .test_lean_spans import SeededIds, apply, cases, parent_context


def run(case: dict[str, Any], direct: bool) -> tuple[list[bytes], list[Any]]:
    """The case on the SDK's tracer or a direct one: each exported span's bytes, in order
    of ending, and what the span said of itself."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=case["sampler"],
        resource=Resource.create({"service.name": "svc"}),
        span_limits=case["limits"],
        id_generator=SeededIds(case["seed"]),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    encoder = SpanEncoder()
    emitted: list[EncodedSpan] = []
    if direct:
        lean = lean_tracer(provider, "scope", "1.0")
        assert isinstance(lean, LeanTracer)
        tracer: Any = DirectTracer(lean, provider, SpanEncoder(), emitted.append, None)
    else:
        tracer = provider.get_tracer("scope", "1.0")
    context = parent_context(case)
    links = [Link(SpanContext(t, s, True, TraceFlags(1)), a) for t, s, a in case["links"]]
    span = tracer.start_span(case["name"], context, case["kind"], case["attributes"], links, 1000)
    apply(span, case["operations"])
    span.end(end_time=2000)
    span.set_attribute("after.end", "ignored")  # refused by both
    span.set_attributes({"after.end": "ignored"})
    span.update_name("after end")
    for item in emitted:
        assert item.resource is provider.resource
        assert item.scope is not None
        assert item.scope.name == "scope"
    exported = [encoder.encode_span(s).data for s in exporter.get_finished_spans()]
    said = [span.get_span_context(), span.is_recording(), type(span).__name__]
    return [item.data for item in emitted] + exported, said


@settings(max_examples=500, deadline=None)
@given(cases())
def test_a_direct_span_exports_what_the_sdk_span_exports(case: dict[str, Any]) -> None:
    expected, (context, recording, _) = run(case, direct=False)
    found, (found_context, found_recording, kind) = run(case, direct=True)
    assert found == expected
    assert (found_context, found_recording) == (context, recording)
    # Lean from the start only for links the direct path does not write.
    direct_links = all(not attributes for _, _, attributes in case["links"]) and (
        case["limits"].max_links is None or len(case["links"]) <= case["limits"].max_links
    )
    assert kind in (
        {"DirectSpan", "NonRecordingSpan"} if direct_links else {"LeanSpan", "NonRecordingSpan"}
    )


def test_the_usual_server_span_stays_direct_and_skips_the_processors() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emitted: list[EncodedSpan] = []
    lean = lean_tracer(provider, "scope")
    assert isinstance(lean, LeanTracer)
    tracer = DirectTracer(lean, provider, SpanEncoder(), emitted.append, None)
    span = tracer.start_span("GET", attributes={"http.request.method": "GET"})
    span.set_attributes({"http.response.status_code": 200, "http.route": "/items/{item_id}"})
    span.update_name("GET /items/{item_id}")
    span.end()
    assert isinstance(span, DirectSpan)
    assert span._lean is None
    assert len(emitted) == 1
    assert exporter.get_finished_spans() == ()


def otlp_settings(monkeypatch: Any) -> ServiceSettings:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    return ServiceSettings(service_name="svc")


def test_the_service_tracer_is_direct_only_while_the_exporter_is_the_only_processor(
    monkeypatch: Any,
) -> None:
    provider = build_tracer_provider(otlp_settings(monkeypatch))
    (processor,) = provider._active_span_processor._span_processors
    assert isinstance(processor, EncodingBatchSpanProcessor)
    tracer = service_tracer(provider)
    assert isinstance(tracer, DirectTracer)
    assert isinstance(tracer.start_span("direct"), DirectSpan)
    # A processor added later (a test's exporter, a user's enricher) sees every span.
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = tracer.start_span("lean")
    span.end()
    assert not isinstance(span, DirectSpan)
    assert [s.name for s in exporter.get_finished_spans()] == ["lean"]
    provider.shutdown()


def test_without_the_chassis_exporter_the_service_tracer_is_lean(monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = build_tracer_provider(ServiceSettings(service_name="svc"))
    assert not isinstance(service_tracer(provider), DirectTracer)
    other = TracerProvider()
    processor = SimpleSpanProcessor(InMemorySpanExporter())
    other.add_span_processor(processor)
    tracer = direct_tracer(
        other, "scope", None, encoder=SpanEncoder(), sink=lambda _: None, processor=None
    )
    assert isinstance(tracer, LeanTracer)
