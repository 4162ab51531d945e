from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from service_chassis.testing.servers import serve
from tests.sample.app import create_app
from tests.sample.settings import Settings

MEMBERS = {"type", "title", "status", "detail", "instance", "trace_id"}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= MEMBERS
    assert body["status"] == status
    assert isinstance(body["trace_id"], str)
    assert len(body["trace_id"]) == 32
    return body


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/no/such/thing"), 404)
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert body["instance"] == "/no/such/thing"


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/items/1")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_invalid_body_lists_each_field_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "", "quantity": 0})
    body = assert_problem(response, 422)
    pointers = {error["pointer"] for error in body["errors"]}
    assert pointers == {"#/body/name", "#/body/quantity"}
    assert all(error["detail"] and error["type"] for error in body["errors"])


async def test_invalid_path_parameter_is_a_422_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/items/abc"), 422)
    assert body["errors"][0]["pointer"] == "#/path/item_id"


async def test_domain_problem_carries_its_type_and_extensions(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/items/404"), 404)
    assert body["type"] == "urn:problem:item-not-found"
    assert body["title"] == "Item not found"
    assert body["item_id"] == 404


async def test_incoming_trace_id_is_the_problem_trace_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/404", headers={"traceparent": TRACEPARENT})
    assert assert_problem(response, 404)["trace_id"] == TRACEPARENT.split("-")[1]


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
async def test_oversized_body_is_a_413_problem(
    make_settings: Callable[..., Settings], tracer_provider: TracerProvider, streamed: bool
) -> None:
    app = create_app(make_settings(max_request_body_bytes=64), tracer_provider=tracer_provider)
    payload = b'{"name": "' + b"x" * 200 + b'", "quantity": 1}'

    async def chunks() -> Any:
        yield payload[:100]
        yield payload[100:]

    async with serve(app) as client:
        content: Any = chunks() if streamed else payload
        response = await client.post(
            "/items", content=content, headers={"content-type": "application/json"}
        )
    assert_problem(response, 413)


async def test_declared_oversized_body_is_refused_before_the_route_in_the_request_trace(
    make_settings: Callable[..., Settings], tracer_provider: TracerProvider
) -> None:
    app = create_app(make_settings(max_request_body_bytes=64), tracer_provider=tracer_provider)
    async with serve(app) as client:
        # The route never reads a body: only the declared length can refuse it.
        response = await client.request(
            "GET", "/items/1", content=b"x" * 65, headers={"traceparent": TRACEPARENT}
        )
        within = await client.request("GET", "/items/1", content=b"x" * 64)
    assert assert_problem(response, 413)["trace_id"] == TRACEPARENT.split("-")[1]
    assert within.status_code == 200


async def test_oversized_body_on_a_probe_path_is_refused_too(
    make_settings: Callable[..., Settings], tracer_provider: TracerProvider
) -> None:
    app = create_app(make_settings(max_request_body_bytes=64), tracer_provider=tracer_provider)
    async with serve(app) as client:
        response = await client.request("GET", "/health/live", content=b"x" * 65)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_unexpected_error_is_a_500_problem_without_exception_text(
    app: FastAPI,
) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret database password in message")

    async with serve(app) as client:
        response = await client.get("/boom")
    body = assert_problem(response, 500)
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert body["title"] == "Internal Server Error"


async def test_wrong_method_on_a_probe_path_is_traced_too(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/health/live"), 405)


async def test_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.delete("/downstream")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert "allowed: GET, POST" in response.json()["detail"]


async def test_malformed_json_says_so_and_where(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/items",
        content=b'{"name": "x", "quantity": }',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith("The request body is not valid JSON: ")
    assert "at character 26" in body["detail"]
    assert [error["pointer"] for error in body["errors"]] == ["#/body"]
