from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from service_chassis import Service
from service_chassis.health import HealthRegistry
from service_chassis.testing.servers import serve


async def test_liveness_has_no_dependency_checks(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/health+json"
    assert response.json()["status"] == "pass"
    assert response.json()["checks"] == {}


async def test_readiness_passes_with_passing_checks(app: FastAPI) -> None:
    context: Service = app.state.service

    async def ok() -> str:
        return "connected"

    context.health.add("broker:connection", ok)
    async with serve(app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/health+json"
    entry = response.json()["checks"]["broker:connection"][0]
    assert entry["status"] == "pass"
    assert entry["output"] == "connected"


async def test_failing_check_makes_readiness_503_but_not_liveness(app: FastAPI) -> None:
    async def down() -> None:
        raise ConnectionError("connection refused")

    app.state.service.health.add("registry:connection", down)
    async with serve(app) as client:
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert ready.status_code == 503
    entry = ready.json()["checks"]["registry:connection"][0]
    assert entry["status"] == "fail"
    assert "connection refused" in entry["output"]
    assert live.status_code == 200


async def test_checks_run_concurrently_each_under_its_timeout() -> None:
    registry = HealthRegistry(service_id="svc", release_id="1")

    async def slow() -> None:
        await asyncio.sleep(5)

    for index in range(5):
        registry.add(f"slow-{index}:connection", slow, timeout=0.2)
    started = time.perf_counter()
    ready, document = await registry.readiness()
    elapsed = time.perf_counter() - started
    assert not ready
    assert elapsed < 1.0  # five 0.2 s timeouts in parallel, not 1 s in sequence
    assert all("no answer within 0.2 s" in e[0]["output"] for e in document["checks"].values())


async def test_readiness_fails_while_shutting_down(app: FastAPI) -> None:
    async with serve(app) as client:
        app.state.service.health.shutting_down = True
        response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["lifecycle:shutdown"][0]["status"] == "fail"
