"""Spans queued already encoded: the export request is the SDK's encoding of the same spans,
the SDK's batch settings hold, and a span OTLP cannot carry is dropped, never raised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from service_chassis.lean_spans import lean_tracer
from service_chassis.span_encoding import EncodedSpan
from service_chassis.testing.otlp_receiver import OtlpReceiver
from service_chassis.tracing import EncodingBatchSpanProcessor, FastHttpSpanExporter


class CapturingExporter(FastHttpSpanExporter):
    """Encodes what the processor hands over, as the real export does, and keeps it."""

    def __init__(self) -> None:
        super().__init__(endpoint="http://127.0.0.1:9/v1/traces")
        self.batches: list[list[ReadableSpan | EncodedSpan]] = []
        self.requests: list[bytes] = []

    def export(self, spans: Sequence[ReadableSpan | EncodedSpan]) -> SpanExportResult:
        self.batches.append(list(spans))
        self.requests.append(self.encoder.encode(spans))
        return SpanExportResult.SUCCESS


def run_spans(count: int, sampler: object = None) -> tuple[CapturingExporter, list[ReadableSpan]]:
    exporter = CapturingExporter()
    reference = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}), sampler=sampler)  # type: ignore[arg-type]
    provider.add_span_processor(EncodingBatchSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(reference))
    tracers = [lean_tracer(provider, "chassis", "1.0"), provider.get_tracer("other")]
    for number in range(count):
        span = tracers[number % 2].start_span(
            f"span {number}", kind=SpanKind.SERVER, attributes={"n": number, "s": "x" * number}
        )
        span.add_event("event", {"k": number})
        span.end()
    provider.force_flush()
    provider.shutdown()
    return exporter, list(reference.get_finished_spans())


def test_the_request_is_the_sdks_encoding_of_the_spans() -> None:
    exporter, spans = run_spans(40)
    sent = ExportTraceServiceRequest()
    for request in exporter.requests:
        sent.MergeFrom(ExportTraceServiceRequest.FromString(request))
    assert sent == encode_spans(spans)
    # What was queued were bytes, not the spans.
    assert all(isinstance(item, EncodedSpan) for batch in exporter.batches for item in batch)


def test_unsampled_spans_are_not_queued() -> None:
    exporter, spans = run_spans(200, ParentBased(TraceIdRatioBased(0.1)))
    queued = sum(len(batch) for batch in exporter.batches)
    assert queued == len(spans)  # the reference exporter sees only sampled spans too
    assert queued < 100


def test_the_batch_size_comes_from_otel_bsp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "7")
    exporter, _ = run_spans(30)
    assert max(len(batch) for batch in exporter.batches) == 7
    assert sum(len(batch) for batch in exporter.batches) == 30


def test_a_span_otlp_cannot_carry_is_dropped() -> None:
    exporter = CapturingExporter()
    provider = TracerProvider()
    provider.add_span_processor(EncodingBatchSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    bad = tracer.start_span("bad")
    bad._attributes._dict["odd"] = object()  # type: ignore[attr-defined]  # past validation
    bad.end()  # no exception into the caller
    tracer.start_span("good").end()
    provider.force_flush()
    names = [span.name for request in exporter.requests for span in _spans(request)]
    assert names == ["good"]


def _spans(request: bytes) -> list[Any]:
    decoded = ExportTraceServiceRequest.FromString(request)
    return [s for r in decoded.resource_spans for ss in r.scope_spans for s in ss.spans]


async def test_spans_reach_a_receiver_over_http(otlp_receiver: OtlpReceiver) -> None:
    exporter = FastHttpSpanExporter(endpoint=f"{otlp_receiver.http_endpoint}/v1/traces")
    provider = TracerProvider()
    provider.add_span_processor(EncodingBatchSpanProcessor(exporter))
    for number in range(3):
        lean_tracer(provider, "chassis").start_span(f"s{number}").end()
    provider.force_flush()
    provider.shutdown()
    assert sorted(span.name for span in otlp_receiver.spans) == ["s0", "s1", "s2"]
