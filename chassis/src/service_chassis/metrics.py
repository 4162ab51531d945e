"""Prometheus metrics, on a registry of the service's own (never the process-global one).

Names and labels follow OpenTelemetry's HTTP semantic conventions as Prometheus spells them;
see docs/metrics.md in the template repository for the contract dashboards rely on.
"""

from __future__ import annotations

import asyncio
import platform
import time
from bisect import bisect_left
from dataclasses import dataclass

from opentelemetry import trace
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.samples import Exemplar

from ._version import __version__
from .active_requests import ActiveRequests

# OpenTelemetry's recommended HTTP duration buckets, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

SERVER_LABELS = ("http_request_method", "http_route", "http_response_status_code")
CLIENT_LABELS = ("http_request_method", "server_address", "http_response_status_code", "error_type")


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    server_duration: Histogram
    server_active: ActiveRequests
    client_duration: Histogram
    event_loop_lag: Gauge


def create_metrics(*, version: str, owner: str) -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    # The default collectors are singletons bound to the global registry; register their
    # collect() on ours too, so process, GC and platform metrics appear on /metrics.
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    build_info = Gauge(
        "service_build_info",
        "Which build of the service is running (always 1).",
        ("version", "owner", "python_version", "chassis_version"),
        registry=registry,
    )
    build_info.labels(version, owner, platform.python_version(), __version__).set(1)
    return Metrics(
        registry=registry,
        server_duration=Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            SERVER_LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        server_active=ActiveRequests(registry),
        client_duration=Histogram(
            "http_client_request_duration_seconds",
            "Duration of outbound HTTP requests, one observation per attempt.",
            CLIENT_LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        event_loop_lag=Gauge(
            "event_loop_lag_seconds",
            "How late the event loop ran the last periodic probe.",
            registry=registry,
        ),
    )


def current_exemplar() -> dict[str, str] | None:
    """The ``trace_id`` exemplar of the active span, when it is sampled."""
    return span_exemplar(trace.get_current_span().get_span_context())


def span_exemplar(context: trace.SpanContext) -> dict[str, str] | None:
    """The ``trace_id`` exemplar of a span, when it is sampled."""
    if context.is_valid and context.trace_flags.sampled:
        return {"trace_id": format(context.trace_id, "032x")}
    return None


def observe(child: Histogram, amount: float, exemplar: dict[str, str] | None) -> None:
    """``child.observe(amount, exemplar)`` for a labelled histogram and an exemplar the
    chassis made (a trace id, always valid): what prometheus_client does, less its checks of
    the labels and the exemplar, which cost more than the observation on every request and
    message. tests/test_metrics.py proves the same exposition for arbitrary observations."""
    child._sum.inc(amount)
    if amount != amount:
        return  # NaN: in no bucket, as in observe (no bound is >= NaN)
    # The first bound >= amount, as observe's loop finds (the last bound is +Inf).
    bucket = child._buckets[bisect_left(child._upper_bounds, amount)]
    bucket.inc(1)
    if exemplar:
        bucket.set_exemplar(Exemplar(exemplar, amount, time.time()))


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """Prometheus text, or OpenMetrics (the only format with exemplars) when asked for."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


async def watch_event_loop_lag(gauge: Gauge, interval: float = 0.25) -> None:
    """Sleep ``interval`` and record how much later than that the loop woke us."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        gauge.set(max(0.0, time.perf_counter() - started - interval))
