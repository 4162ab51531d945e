from __future__ import annotations

import io
import json

import httpx
import pytest
from fastapi import FastAPI

from service_chassis.logs import configure_logging
from service_chassis.testing.servers import serve


def series(app: FastAPI, metric: str) -> list[dict[str, str]]:
    registry = app.state.service.metrics.registry
    return [
        sample.labels
        for family in registry.collect()
        for sample in family.samples
        if sample.name == metric
    ]


async def test_routes_with_ids_share_one_series(app: FastAPI) -> None:
    async with serve(app) as client:
        await client.get("/items/1")
        await client.get("/items/2")
    counts = series(app, "http_server_request_duration_seconds_count")
    routes = {(labels["http_route"], labels["http_response_status_code"]) for labels in counts}
    assert routes == {("/items/{item_id}", "200"), ("/items/{item_id}", "404")}
    assert not any(labels["http_route"] == "/items/1" for labels in counts)


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient, app: FastAPI) -> None:
    for path in ("/a", "/b/c", "/d/e/f"):
        await client.get(path)
    counts = series(app, "http_server_request_duration_seconds_count")
    routes = {labels["http_route"] for labels in counts}
    assert routes == {"unmatched"}


async def test_unknown_methods_are_labelled_other(client: httpx.AsyncClient, app: FastAPI) -> None:
    await client.request("BREW", "/items/1")
    counts = series(app, "http_server_request_duration_seconds_count")
    methods = {labels["http_request_method"] for labels in counts}
    assert methods == {"_OTHER"}


async def test_health_and_metrics_are_not_observed(client: httpx.AsyncClient, app: FastAPI) -> None:
    await client.get("/health/live")
    await client.get("/health/ready")
    await client.get("/metrics")
    assert series(app, "http_server_request_duration_seconds_count") == []


@pytest.fixture
def log_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(service="svc", level="INFO", stream=stream)
    return stream


async def test_one_access_log_line_per_request(
    client: httpx.AsyncClient, log_stream: io.StringIO
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await client.get("/items/1", headers={"traceparent": traceparent})
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["event"] == "request"
    assert entry["http_method"] == "GET"
    assert entry["http_route"] == "/items/{item_id}"
    assert entry["url_path"] == "/items/1"
    assert entry["http_status"] == 200
    assert entry["duration_ms"] >= 0
    assert entry["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert entry["service"] == "svc"


async def test_unhandled_exception_is_logged_with_its_trace(
    app: FastAPI, log_stream: io.StringIO
) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    async with serve(app) as client:
        response = await client.get("/boom")
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    errors = [line for line in lines if line["event"] == "unhandled exception"]
    assert len(errors) == 1
    assert "RuntimeError: kaput" in errors[0]["exception"]
    assert errors[0]["trace_id"] == response.json()["trace_id"]
    access = [line for line in lines if line["logger"] == "access"]
    assert access[0]["http_status"] == 500
