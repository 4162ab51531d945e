from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service_chassis.testing.otlp_receiver import OtlpReceiver, run_receiver
from service_chassis.testing.servers import RecordingDownstream, run_downstream, serve
from tests.sample.app import create_app
from tests.sample.settings import Settings

PACKAGE = "tests.sample"


@pytest.fixture(autouse=True)
def _no_real_dependencies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of the HTTP side run without a broker or a registry: tests/messaging and
    tests/discovery wire their own. (Bakes without those parts ignore the variables.)"""
    monkeypatch.setenv("MESSAGING_ENABLED", "false")
    # A port nothing listens on: a developer's own Consul agent is never registered with.
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:9")


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    return provider


def downstream_env(monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any]) -> dict[str, Any]:
    """Move ``downstream_*`` overrides into the ``DOWNSTREAM_*`` variables the example's
    declared downstream reads when the app is built; return the other overrides."""
    for name in [name for name in overrides if name.startswith("downstream_")]:
        monkeypatch.setenv(name.upper(), str(overrides.pop(name)))
    return overrides


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        defaults: dict[str, Any] = {"otel_traces_exporter": "none"}
        return Settings(**{**defaults, **downstream_env(monkeypatch, overrides)})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings, tracer_provider: TracerProvider) -> FastAPI:
    return create_app(settings, tracer_provider=tracer_provider)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as client:
        yield client


@pytest.fixture
def downstream() -> Iterator[RecordingDownstream]:
    yield from run_downstream()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    yield from run_receiver()
