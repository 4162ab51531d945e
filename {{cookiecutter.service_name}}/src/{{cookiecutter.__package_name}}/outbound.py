"""The one place outbound HTTP clients are made.

Every client gets explicit timeouts, a bounded connection pool, a client span per request with
``traceparent``/``tracestate``/``baggage`` injected, and one
``http_client_request_duration_seconds`` observation per attempt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport
from opentelemetry.trace import TracerProvider
from prometheus_client import Histogram

from .metrics import current_exemplar
from .observe import KNOWN_METHODS


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
        except Exception as error:
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


def build_client(
    config: ClientConfig, *, tracer_provider: TracerProvider, duration: Histogram
) -> httpx.AsyncClient:
    pool = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=config.max_connections),
        retries=0,  # retries are a policy decision, made above the transport
    )
    transport = AsyncOpenTelemetryTransport(
        MeasuredTransport(pool, duration), tracer_provider=tracer_provider
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
