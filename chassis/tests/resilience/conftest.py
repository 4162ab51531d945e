from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from service_chassis.downstreams import Downstream, Downstreams
from service_chassis.metrics import create_metrics
from service_chassis.resilience.client import ResilientClient

from .faults import FaultyDownstream, run_faulty_downstream

# Short delays and timeouts, so that each scenario takes a fraction of a second.
FAST: dict[str, Any] = {
    "connect_timeout": 0.5,
    "read_timeout": 1.0,
    "timeout_seconds": 2.0,
    "retry_base_delay_seconds": 0.01,
    "retry_max_delay_seconds": 0.05,
    "breaker_open_seconds": 0.3,
}


def knobs(**overrides: Any) -> dict[str, Any]:
    return {**FAST, **overrides}


@pytest.fixture
def faulty() -> Iterator[FaultyDownstream]:
    yield from run_faulty_downstream()


class Harness:
    """The service's own registry of downstreams on a metrics registry of the test's own."""

    def __init__(self, tracer_provider: TracerProvider) -> None:
        metrics = create_metrics(version="test", owner="test")
        self.registry: CollectorRegistry = metrics.registry
        self.downstreams = Downstreams(tracer_provider=tracer_provider, metrics=metrics)

    def add(self, url: str, name: str = "downstream", **overrides: Any) -> ResilientClient:
        return self.downstreams.declare(Downstream(name), url=url, **knobs(**overrides))

    def value(self, metric: str, **labels: str) -> float:
        sample = self.registry.get_sample_value(metric, labels)
        return 0.0 if sample is None else sample

    async def aclose(self) -> None:
        await self.downstreams.aclose()


@pytest.fixture
async def harness(tracer_provider: TracerProvider) -> AsyncIterator[Harness]:
    harness = Harness(tracer_provider)
    yield harness
    await harness.aclose()


def call_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The logical-call spans (`downstream GET`, ...), oldest first."""
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.INTERNAL]


def attempt_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]
