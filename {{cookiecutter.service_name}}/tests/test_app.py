"""The contract every service keeps, as the chassis wires it into this one."""

from __future__ import annotations

import httpx
import service_chassis

from {{ cookiecutter.__package_name }} import __version__

PROBLEM_JSON = "application/problem+json"
HEALTH_JSON = "application/health+json"


async def test_liveness_and_readiness(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    assert (live.status_code, live.headers["content-type"]) == (200, HEALTH_JSON)
    ready = await client.get("/health/ready")
    assert ready.status_code in (200, 503)
    assert ready.headers["content-type"] == HEALTH_JSON


async def test_metrics_name_the_service_and_chassis_versions(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "# TYPE http_server_request_duration_seconds histogram" in text
    assert f'chassis_version="{service_chassis.__version__}"' in text
    assert f'version="{__version__}"' in text


async def test_an_unknown_path_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/path")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert {"type", "title", "status", "detail", "instance", "trace_id"} <= set(response.json())
