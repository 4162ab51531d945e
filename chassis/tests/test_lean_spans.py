"""Lean spans against the SDK's: for arbitrary operations, limits, parents and samplers, what
reaches the span processors encodes to exactly the message the SDK's own spans give."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from service_chassis.lean_spans import LeanSpan, lean_tracer
from service_chassis.span_encoding import SpanEncoder

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
    st.none(),  # invalid: dropped by the SDK, with a warning
    st.just({"not": "allowed"}),
)
keys = st.one_of(st.text(max_size=10), st.sampled_from(["http.route", "a", ""]))
attributes = st.dictionaries(keys, values, max_size=6)
ids = st.integers(min_value=1, max_value=2**64 - 1)
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)
limits = st.builds(
    SpanLimits,
    max_span_attributes=st.none() | st.integers(0, 4),
    max_span_attribute_length=st.none() | st.integers(0, 6),
    max_events=st.none() | st.integers(0, 2),
    max_links=st.none() | st.integers(0, 2),
    max_event_attributes=st.none() | st.integers(0, 2),
    max_link_attributes=st.none() | st.integers(0, 2),
)
samplers = st.sampled_from(
    [
        ALWAYS_ON,
        ALWAYS_OFF,
        ParentBased(ALWAYS_ON),
        ParentBased(TraceIdRatioBased(0.5)),
        # Every decision the opposite of the default's (static_sampling.py's table).
        ParentBased(
            ALWAYS_OFF,
            remote_parent_sampled=ALWAYS_OFF,
            remote_parent_not_sampled=ALWAYS_ON,
            local_parent_sampled=ALWAYS_OFF,
            local_parent_not_sampled=ALWAYS_ON,
        ),
        StaticSampler(Decision.RECORD_ONLY),  # recorded, not sampled: the sampler is called
    ]
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set_attribute"), keys, values),
        st.tuples(st.just("set_attributes"), attributes),
        st.tuples(st.just("add_event"), text, attributes),
        st.tuples(st.just("add_link"), trace_ids, ids, attributes),
        st.tuples(st.just("update_name"), text),
        st.tuples(
            st.just("set_status"),
            st.sampled_from(
                [Status(StatusCode.OK), Status(StatusCode.ERROR, "it broke"), StatusCode.ERROR]
            ),
        ),
        st.tuples(st.just("record_exception"), st.sampled_from([ValueError("v"), KeyError()])),
    ),
    max_size=6,
)


class SeededIds(RandomIdGenerator):
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(text),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(attributes),
        "parent": draw(
            st.none() | st.tuples(trace_ids, ids, st.booleans(), st.booleans(), st.booleans())
        ),
        "links": draw(st.lists(st.tuples(trace_ids, ids, attributes), max_size=2)),
        "operations": draw(operations),
        "limits": draw(limits),
        "sampler": draw(samplers),
        "seed": draw(st.integers(0, 2**32)),
    }


def parent_context(case: dict[str, Any]) -> Context | None:
    """The case's parent, remote or not, sampled or not, with or without a trace state."""
    if case["parent"] is None:
        return None
    trace_id, span_id, remote, sampled, with_state = case["parent"]
    state = TraceState([("vendor", "x")]) if with_state else TraceState()
    parent = SpanContext(trace_id, span_id, remote, TraceFlags(int(sampled)), state)
    return set_span_in_context(NonRecordingSpan(parent))


def apply(span: Span, operations: list[tuple[Any, ...]]) -> None:
    """The case's operations on a started span, with fixed timestamps."""
    for operation, *arguments in operations:
        if operation == "add_event":
            span.add_event(arguments[0], arguments[1], timestamp=1500)
        elif operation == "add_link":
            trace_id, span_id, link_attributes = arguments
            span.add_link(SpanContext(trace_id, span_id, True, TraceFlags(1)), link_attributes)
        elif operation == "record_exception":
            span.record_exception(arguments[0], timestamp=1600)
        else:
            getattr(span, operation)(*arguments)


def run(case: dict[str, Any], lean: bool) -> tuple[list[ReadableSpan], list[Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=case["sampler"],
        resource=Resource.create({"service.name": "svc"}),
        span_limits=case["limits"],
        id_generator=SeededIds(case["seed"]),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = lean_tracer(provider, "scope", "1.0") if lean else provider.get_tracer("scope", "1.0")
    context = parent_context(case)
    links = [Link(SpanContext(t, s, True, TraceFlags(1)), a) for t, s, a in case["links"]]
    span = tracer.start_span(
        case["name"], context, case["kind"], case["attributes"], links, start_time=1000
    )
    apply(span, case["operations"])
    span.end(end_time=2000)
    span.set_attribute("after.end", "ignored")  # refused by both
    span.set_attributes({"after.end": "ignored"})
    return list(exporter.get_finished_spans()), [span.get_span_context(), span.is_recording()]


@settings(max_examples=400, deadline=None)
@given(cases())
def test_a_lean_span_exports_what_the_sdk_span_exports(case: dict[str, Any]) -> None:
    expected, expected_span = run(case, lean=False)
    found, found_span = run(case, lean=True)
    assert found_span == expected_span  # ids, flags, state; recording or not
    assert encode_spans(found) == encode_spans(expected)
    # What encode_spans leaves out: the counts of what the limits dropped, seen by exporters.
    for lean, sdk in zip(found, expected, strict=True):
        assert isinstance(lean, LeanSpan)
        assert lean.dropped_attributes == sdk.dropped_attributes
        assert lean.dropped_events == sdk.dropped_events
        assert lean.dropped_links == sdk.dropped_links
        assert dict(lean.attributes or {}) == dict(sdk.attributes or {})
        assert lean.to_json() == sdk.to_json()
    # The chassis's encoder reads a lean span's fields directly: the same bytes as for the
    # SDK's span, and, when the limits dropped nothing, what the SDK's own encoder builds.
    ours = SpanEncoder()
    assert ours.encode(found) == ours.encode(expected)
    if not any(s.dropped_attributes or s.dropped_events or s.dropped_links for s in expected):
        assert ExportTraceServiceRequest.FromString(ours.encode(found)) == encode_spans(expected)


def test_a_disabled_sdk_gives_its_no_op_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = lean_tracer(provider, "scope").start_span("nothing")
    assert not span.is_recording()
    span.end()
    assert exporter.get_finished_spans() == ()


def test_spans_of_other_tracers_share_the_provider() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lean = lean_tracer(provider, "chassis").start_span("server")
    other = provider.get_tracer("httpx").start_span("client", set_span_in_context(lean))
    other.end()
    lean.end()
    client, server = exporter.get_finished_spans()
    assert client.parent == server.get_span_context()
    assert client.instrumentation_scope is not None
    assert server.instrumentation_scope is not None
    assert client.instrumentation_scope.name == "httpx"
    assert server.instrumentation_scope.name == "chassis"
