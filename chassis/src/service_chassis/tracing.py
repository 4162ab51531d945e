"""The tracer provider: resource, sampler and exporters from the standard ``OTEL_*`` variables.

With no OTLP endpoint configured the provider still creates spans (so logs carry trace ids and
context propagates), but exports nothing and says so once, instead of retrying a collector that
is not there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import structlog
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from ._version import __version__
from .configuration import ConfigurationError
from .direct_spans import direct_tracer
from .export_transport import lean_transport
from .lean_spans import lean_tracer
from .settings import ServiceSettings
from .span_encoding import EncodedSpan, SpanEncoder

log = structlog.get_logger(__name__)


class UnknownExporterError(ConfigurationError):
    def __init__(self, message: str) -> None:
        super().__init__([message])


def build_resource(settings: ServiceSettings) -> Resource:
    defaults = {
        "service.name": settings.service_name,
        "service.version": settings.service_version,
        "service.owner": settings.owner,
        "deployment.environment": settings.environment,
        "deployment.environment.name": settings.environment,
        # Which chassis release made this service's telemetry (OpenTelemetry's distro fields).
        "telemetry.distro.name": "service-chassis",
        "telemetry.distro.version": __version__,
    }
    # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win over the baked defaults.
    from_environment = OTELResourceDetector().detect().attributes
    return Resource.create({**defaults, **from_environment})


def _otlp_exporter(settings: ServiceSettings) -> SpanExporter:
    # Headers, timeouts, compression and certificates still come from the exporters' own
    # OTEL_EXPORTER_OTLP_* variables.
    base = (settings.otel_exporter_otlp_endpoint or "").rstrip("/")
    if settings.otel_exporter_otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=settings.otel_exporter_otlp_traces_endpoint or base)
    # Per the specification, the signal path is appended to the base endpoint only.
    endpoint = settings.otel_exporter_otlp_traces_endpoint or f"{base}/v1/traces"
    return FastHttpSpanExporter(endpoint=endpoint)


class FastHttpSpanExporter(HttpSpanExporter):
    """The SDK's OTLP/HTTP exporter (endpoint, headers, TLS, compression, retries), with the
    span encoding of span_encoding.py, several times cheaper than the SDK's own, sent with
    the SDK's urllib3 transport where requests adds nothing (export_transport.py)."""

    def __init__(self, *, endpoint: str) -> None:
        transport = lean_transport(endpoint)
        if transport is None:
            super().__init__(endpoint=endpoint)
        else:
            super().__init__(endpoint=endpoint, _transport=transport)
        self.encoder = SpanEncoder()
        self._hint = ProtocolHint(endpoint=endpoint)

    def export(self, spans: Sequence[ReadableSpan | EncodedSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            payload = self.encoder.encode(spans)
        except Exception:  # an unencodable batch is dropped, never raised into the SDK
            log.exception("span batch could not be encoded", spans=len(spans))
            return SpanExportResult.FAILURE
        result = self._client.export(payload)
        if not result.success and result.error is not None:
            self._hint.check(result.error)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


class EncodingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor (``OTEL_BSP_*``, force_flush, shutdown, the queue's limit)
    queueing each sampled span already encoded, as it ends.

    Queued spans otherwise stay alive until their batch is exported: the garbage collector
    walks them at every collection, and the export thread encodes hundreds at a time while
    holding the interpreter lock, which requests wait for (p99 latency). Encoded at the end
    of the span, the span's objects are freed at once and the export thread only joins bytes
    and sends them.
    """

    def __init__(self, exporter: FastHttpSpanExporter) -> None:
        super().__init__(exporter)
        self.encoder = exporter.encoder
        self._encode = exporter.encoder.encode_span
        self._said = False
        # Queues a span encoded elsewhere (direct_spans.py), as on_end queues its own: the
        # queue's own method, one call less per span.
        self.emit_encoded: Callable[[EncodedSpan], None] = self._batch_processor.emit  # type: ignore[assignment]

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        try:
            encoded = self._encode(span)
        except Exception:  # an attribute value OTLP cannot carry: never raised into the caller
            if not self._said:
                self._said = True
                log.exception("a span could not be encoded and was dropped", span=span.name)
            return
        self._batch_processor.emit(encoded)  # type: ignore[arg-type]


class ProtocolHint:
    """Says once, plainly, when the OTLP/HTTP endpoint answers in gRPC: the most common reason
    no spans arrive (4317 is OTLP's gRPC port, 4318 its HTTP port), which the exporter itself
    reports only as a connection error full of binary."""

    def __init__(self, *, endpoint: str) -> None:
        self._endpoint = endpoint
        self._said = False

    def check(self, error: BaseException) -> None:
        if self._said or not answered_in_grpc(error):
            return
        self._said = True
        log.warning(
            f"spans are not exported: {self._endpoint} answers in gRPC, not OTLP/HTTP; set "
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or point OTEL_EXPORTER_OTLP_ENDPOINT at the "
            "HTTP port (4318)",
            endpoint=self._endpoint,
        )


def answered_in_grpc(error: BaseException) -> bool:
    """An HTTP/1.1 client that read an HTTP/2 server's first frame (gRPC speaks HTTP/2 only)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = f"{type(current).__name__}: {current!r}"
        if "BadStatusLine" in text and ("\\x00\\x00" in text or "\x00\x00" in text):
            return True
        current = current.__cause__ or current.__context__
    return False


def _console_exporter() -> SpanExporter:
    # stderr, one line per span: stdout belongs to the JSON logs.
    return ConsoleSpanExporter(
        out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n"
    )


def build_span_processors(settings: ServiceSettings) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    for name in settings.traces_exporters:
        if name == "none":
            continue
        if name == "console":
            processors.append(BatchSpanProcessor(_console_exporter()))
        elif name == "otlp":
            if settings.otlp_endpoint_configured:
                exporter = _otlp_exporter(settings)
                processors.append(
                    EncodingBatchSpanProcessor(exporter)
                    if isinstance(exporter, FastHttpSpanExporter)
                    else BatchSpanProcessor(exporter)
                )
            else:
                log.info(
                    "traces are not exported: set OTEL_EXPORTER_OTLP_ENDPOINT to send them",
                    exporter="otlp",
                )
        else:
            raise UnknownExporterError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp, console or none"
            )
    return processors


def build_tracer_provider(settings: ServiceSettings) -> TracerProvider:
    """A provider that samples as OTEL_TRACES_SAMPLER(_ARG) say (parent-based by default)."""
    provider = TracerProvider(resource=build_resource(settings), shutdown_on_exit=False)
    for processor in build_span_processors(settings):
        provider.add_span_processor(processor)
    return provider


def chassis_tracer(provider: trace.TracerProvider, name: str) -> trace.Tracer:
    """The tracer of the spans the chassis makes on every request and message: direct
    (direct_spans.py) while the chassis's OTLP exporter is the provider's only processor,
    else lean (lean_spans.py)."""
    processors = getattr(provider, "_active_span_processor", None)
    only: tuple[SpanProcessor, ...] = getattr(processors, "_span_processors", ())
    processor = only[0] if len(only) == 1 else None
    if isinstance(processor, EncodingBatchSpanProcessor):
        return direct_tracer(
            provider,
            name,
            __version__,
            encoder=processor.encoder,
            sink=processor.emit_encoded,
            processor=processor,
        )
    return lean_tracer(provider, name, __version__)


def service_tracer(provider: trace.TracerProvider) -> trace.Tracer:
    """The tracer of the HTTP server span."""
    return chassis_tracer(provider, __name__.rpartition(".")[0])


def fastapi_telemetry(
    settings: ServiceSettings,
    provider: TracerProvider,
    exclude: Callable[[MutableMapping[str, Any]], bool],
) -> TelemetryConfig:
    """FastAPI's own telemetry: off, unless operation spans are asked for.

    The service's request observer makes the server span at a fraction of the cost. FastAPI's
    telemetry adds spans for dependencies, endpoint and serialisation on top of its own server
    span; when TRACE_OPERATION_SPANS asks for them, it makes the server span instead. Its
    metrics stay off (prometheus-client serves /metrics, with exemplars) and so do its log
    records, which carry exception messages and stack traces.
    """
    return {
        "tracer_provider": provider,
        "tracing": settings.trace_operation_spans,
        "operation_spans": settings.trace_operation_spans,
        "metrics": False,
        "logs": False,
        "auto_configure": False,
        "exclude": exclude,
    }
