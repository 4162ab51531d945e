from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from service_chassis.testing.databases import migrated_database
from service_chassis.testing.otlp_receiver import OtlpReceiver, run_receiver
from service_chassis.testing.servers import (
    RecordingDownstream,
    free_port,
    run_downstream,
    serve,
)
from service_chassis.testing.wiring import environment

from {{ cookiecutter.__package_name }}.app import create_app
from {{ cookiecutter.__package_name }}.settings import Settings

PACKAGE = "{{ cookiecutter.__package_name }}"


@pytest.fixture(autouse=True)
def _no_real_dependencies(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests run without a broker or a registry unless they wire one: messaging
    off, and a Consul address where nothing listens (never a developer's own agent)."""
    monkeypatch.setenv("MESSAGING_ENABLED", "false")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", f"127.0.0.1:{free_port()}")


@pytest.fixture(scope="session", autouse=True)
def _database() -> Iterator[None]:
    """With a database: a fresh one for the session, migrated, named by DATABASE_URL (on the
    server TEST_DATABASE_URL names, by default PostgreSQL on 127.0.0.1:5432); dropped after."""
    with migrated_database(Settings(), PACKAGE) as variables, environment(variables):
        yield


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    return provider


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(**{"otel_traces_exporter": "none", **overrides})

    return make


@pytest.fixture
def app(make_settings: Callable[..., Settings], tracer_provider: TracerProvider) -> FastAPI:
    return create_app(make_settings(), tracer_provider=tracer_provider)


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
