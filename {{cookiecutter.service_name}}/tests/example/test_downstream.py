"""The example downstream calls, against a real server on loopback."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from service_chassis.testing.servers import RecordingDownstream, serve

from {{ cookiecutter.__package_name }}.app import create_app
from {{ cookiecutter.__package_name }}.settings import Settings


async def test_get_calls_the_downstream_with_the_trace(
    monkeypatch: pytest.MonkeyPatch,
    downstream: RecordingDownstream,
    tracer_provider: TracerProvider,
) -> None:
    monkeypatch.setenv("DOWNSTREAM_URL", downstream.url)
    app = create_app(Settings(otel_traces_exporter="none"), tracer_provider=tracer_provider)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with serve(app) as client:
        response = await client.get("/downstream", headers={"traceparent": traceparent})
    assert response.status_code == 200
    assert response.json()["status"] == 200
    [headers] = downstream.requests
    assert headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


async def test_without_a_url_it_answers_a_503_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    monkeypatch.delenv("DOWNSTREAM_URL", raising=False)
    response = await client.get("/downstream")
    assert response.status_code == 503
    assert "DOWNSTREAM_URL" in response.json()["detail"]
