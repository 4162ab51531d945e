"""The hand-written span encoder against the SDK's own: same message, for arbitrary spans."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from service_chassis.span_encoding import UNIQUE_KEYS, SpanEncoder

text = st.text(max_size=12)
scalars = st.one_of(
    text,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
values = st.one_of(
    scalars,
    st.lists(st.text(max_size=5), max_size=3),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3),
)
attributes = st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=5)
ids = st.integers(min_value=1, max_value=2**64 - 1)
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)
states = st.sampled_from([TraceState(), TraceState([("vendor", "opaque"), ("b", "1")])])


@st.composite
def span_specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(text),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(attributes),
        "parent": draw(st.none() | st.tuples(trace_ids, ids, st.booleans(), states)),
        "events": draw(st.lists(st.tuples(text, attributes), max_size=2)),
        "links": draw(st.lists(st.tuples(trace_ids, ids, st.booleans(), attributes), max_size=2)),
        "status": draw(
            st.sampled_from(
                [
                    Status(StatusCode.UNSET),
                    Status(StatusCode.OK),
                    Status(StatusCode.ERROR, "it broke"),
                ]
            )
        ),
    }


def make_spans(specs: list[dict[str, Any]], resource: Resource) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracers = [provider.get_tracer("one", "1.0"), provider.get_tracer("two")]
    for index, spec in enumerate(specs):
        context = None
        if spec["parent"] is not None:
            trace_id, span_id, remote, state = spec["parent"]
            parent = SpanContext(trace_id, span_id, remote, TraceFlags(1), state)
            context = set_span_in_context(NonRecordingSpan(parent))
        links = [
            Link(SpanContext(t, s, remote, TraceFlags(1)), attrs)
            for t, s, remote, attrs in spec["links"]
        ]
        span = tracers[index % 2].start_span(
            spec["name"], context, spec["kind"], spec["attributes"], links
        )
        for name, event_attributes in spec["events"]:
            span.add_event(name, event_attributes)
        span.set_status(spec["status"])
        span.end()
    return list(exporter.get_finished_spans())


@settings(max_examples=150, deadline=None)
@given(st.lists(span_specs(), min_size=1, max_size=4), attributes)
def test_decodes_to_what_the_sdk_encodes(specs: list[dict[str, Any]], extra: Any) -> None:
    spans = make_spans(specs, Resource.create({"service.name": "svc", **extra}))
    expected = encode_spans(spans)
    encoder = SpanEncoder()
    for _ in range(2):  # the second pass runs on the caches
        decoded = ExportTraceServiceRequest.FromString(encoder.encode(spans))
        assert decoded == expected


def test_spans_of_two_resources_stay_apart() -> None:
    first = make_spans([{**EMPTY, "name": "a"}], Resource.create({"service.name": "one"}))
    second = make_spans([{**EMPTY, "name": "b"}], Resource.create({"service.name": "two"}))
    decoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode(first + second))
    assert decoded == encode_spans(first + second)
    assert len(decoded.resource_spans) == 2


EMPTY: dict[str, Any] = {
    "kind": SpanKind.INTERNAL,
    "attributes": {},
    "parent": None,
    "events": [],
    "links": [],
    "status": Status(StatusCode.UNSET),
}


def test_a_full_cache_still_encodes_what_the_sdk_encodes() -> None:
    """Unique values (ids a service set) fill the attribute cache, which empties and refills
    with what repeats; message ids and paths are never cached."""
    specs = [
        {**EMPTY, "name": "s", "attributes": {"id": f"m-{number}", "route": "/items"}}
        for number in range(5000)
    ]
    spans = make_spans(specs, Resource.create({"service.name": "svc"}))
    encoder = SpanEncoder()
    for start in range(0, len(spans), 1000):
        batch = spans[start : start + 1000]
        assert ExportTraceServiceRequest.FromString(encoder.encode(batch)) == encode_spans(batch)
    assert len(encoder._attribute_cache) <= 4096
    assert (b"\x4a", "route", str, "/items") in encoder._attribute_cache  # a span attribute


def test_unique_attributes_are_encoded_as_the_sdk_encodes_them_and_never_cached() -> None:
    values = ["", "m-1", "é" * 200, "x" * 20000]  # lengths of one, two and three varint bytes
    specs = [
        {**EMPTY, "name": "s", "attributes": {key: value, "route": "/items"}}
        for key in sorted(UNIQUE_KEYS)
        for value in values
    ]
    spans = make_spans(specs, Resource.create({"service.name": "svc"}))
    encoder = SpanEncoder()
    assert ExportTraceServiceRequest.FromString(encoder.encode(spans)) == encode_spans(spans)
    assert all(key[1] not in UNIQUE_KEYS for key in encoder._attribute_cache)
