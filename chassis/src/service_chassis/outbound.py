"""The one place outbound HTTP clients are made.

``build_client`` makes the httpx client of one downstream: explicit timeouts, a bounded
connection pool, a client span per attempt with ``traceparent``/``tracestate``/``baggage``
injected, and one ``http_client_request_duration_seconds`` observation per attempt.

Services do not call it themselves: they declare their downstreams (downstreams.py), and each
declared downstream gets one such client inside its resilient client.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport, RequestInfo
from opentelemetry.trace import Span, TracerProvider
from prometheus_client import Histogram

from .client_spans import QuietTracerProvider
from .metrics import current_exemplar
from .observe import KNOWN_METHODS
from .resilience.client import RESEND_COUNT
from .resilience.settings import DownstreamSettings


@dataclass(frozen=True)
class ClientConfig:
    name: str
    base_url: str
    connect_timeout: float
    read_timeout: float
    write_timeout: float
    pool_timeout: float
    max_connections: int


class MeasuredTransport(httpx.AsyncBaseTransport):
    """Time each attempt and label it by outcome, never by URL path."""

    def __init__(self, inner: httpx.AsyncBaseTransport, duration: Histogram) -> None:
        self._inner = inner
        self._duration = duration

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = request.method if request.method in KNOWN_METHODS else "_OTHER"
        address = request.url.host
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except (Exception, asyncio.CancelledError) as error:
            # CancelledError: the attempt was abandoned (its deadline passed, or the caller left).
            self._observe(method, address, "", type(error).__name__, started)
            raise
        status = response.status_code
        self._observe(method, address, str(status), str(status) if status >= 500 else "", started)
        return response

    def _observe(self, method: str, address: str, status: str, error: str, started: float) -> None:
        self._duration.labels(method, address, status, error).observe(
            time.perf_counter() - started, exemplar=current_exemplar()
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


# Wraps the connection pool to send each attempt to a concrete instance of a named service
# (service discovery); the spans and metrics above it keep the service's name.
Resolver = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]


def prefer_stable_http_conventions() -> None:
    """Client spans in OpenTelemetry's stable HTTP conventions (``http.request.method``,
    ``url.full``, ``server.address``), like the service's server spans. The instrumentation
    reads this once per process, when its first transport is made; an explicit setting wins."""
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


def build_client(
    config: ClientConfig,
    *,
    tracer_provider: TracerProvider,
    duration: Histogram,
    resolver: Resolver | None = None,
) -> httpx.AsyncClient:
    prefer_stable_http_conventions()
    pool: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=config.max_connections),
        retries=0,  # retries are a policy decision, made above the transport
    )
    if resolver is not None:
        pool = resolver(pool)
    transport = AsyncOpenTelemetryTransport(
        MeasuredTransport(pool, duration),
        # Errors as error.type only: no exception message or stack trace leaves the service.
        tracer_provider=QuietTracerProvider(tracer_provider),
        request_hook=_mark_resend,
    )
    return httpx.AsyncClient(
        base_url=config.base_url,
        transport=transport,
        timeout=httpx.Timeout(
            connect=config.connect_timeout,
            read=config.read_timeout,
            write=config.write_timeout,
            pool=config.pool_timeout,
        ),
        follow_redirects=False,
    )


async def _mark_resend(span: Span, request: RequestInfo) -> None:
    # OpenTelemetry's HTTP client convention: each resend is its own span, counted from 1.
    resend = (request.extensions or {}).get(RESEND_COUNT)
    if isinstance(resend, int) and resend > 0:
        span.set_attribute("http.request.resend_count", resend)


def client_config(name: str, settings: DownstreamSettings, base_url: str) -> ClientConfig:
    return ClientConfig(
        name=name,
        base_url=base_url,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        write_timeout=settings.write_timeout,
        pool_timeout=settings.pool_timeout,
        max_connections=settings.max_connections,
    )
