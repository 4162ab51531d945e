from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from tests.sample.app import create_app
from tests.sample.settings import Settings

from .consul_server import FakeConsul, run_fake_consul

# Quick retries and short timeouts, so the failure tests take a fraction of a second.
FAST = {
    "CONSUL_RETRY_INITIAL_SECONDS": "0.05",
    "CONSUL_RETRY_MAX_SECONDS": "0.2",
    "CONSUL_TIMEOUT_SECONDS": "0.3",
}


@pytest.fixture
def consul(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConsul]:
    """A Consul agent stand-in, and the environment that points the service at it."""
    for fake in run_fake_consul():
        monkeypatch.setenv("CONSUL_HTTP_ADDR", fake.url)
        for name, value in FAST.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
        monkeypatch.delenv("SERVICE_ID", raising=False)
        monkeypatch.delenv("SERVICE_ADDRESS", raising=False)
        yield fake


@pytest.fixture
def app_factory(
    consul: FakeConsul, make_settings: Callable[..., Settings], tracer_provider: TracerProvider
) -> Callable[..., FastAPI]:
    """Makes the app once the test has set the environment it wants."""

    def make(**overrides: object) -> FastAPI:
        settings = make_settings(
            **{"http_host": "127.0.0.1", "service_discovery": "consul", **overrides}
        )
        return create_app(settings, tracer_provider=tracer_provider)

    return make
