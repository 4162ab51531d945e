"""A service with its database, in process: readiness, the deadline's 504, a database that
goes down and comes back (a cluster of the test's own, stopped and started)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import func, insert, select, text

from service_chassis import Service
from service_chassis.database import CHASSIS_METADATA, DatabaseDependency, DatabaseSettings
from service_chassis.testing.postgres import create_tables, fresh_database, postgres_cluster
from service_chassis.testing.servers import eventually, serve
from tests.sample.settings import Settings

from .conftest import TEST_METADATA, notes

pytestmark = pytest.mark.integration

router = APIRouter()


@router.post("/notes", status_code=201)
async def add_note(database: DatabaseDependency) -> dict[str, int]:
    async with database.transaction() as work:
        await work.session.execute(insert(notes).values(text="n"))
        total = (await work.session.execute(select(func.count()).select_from(notes))).scalar()
    return {"notes": int(total or 0)}


@router.get("/slow")
async def slow(database: DatabaseDependency) -> dict[str, str]:
    async with database.transaction() as work:
        await work.session.execute(text("SELECT pg_sleep(5)"))
    return {"slept": "yes"}


async def prepared(url: str) -> None:
    await create_tables(url, CHASSIS_METADATA, TEST_METADATA)


def build(
    make_settings: Callable[..., Settings], url: str, tracer_provider: TracerProvider
) -> Service:
    service = Service(
        make_settings(database_system="postgres"),
        tracer_provider=tracer_provider,
        database_settings=DatabaseSettings.for_url(url, connect_timeout_seconds=1.0),
    )
    service.include_router(router)
    return service


@pytest.fixture
async def ready_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        await prepared(url)
        yield url


async def test_readiness_has_a_database_check(
    make_settings: Callable[..., Settings], ready_url: str, tracer_provider: TracerProvider
) -> None:
    async with serve(build(make_settings, ready_url, tracer_provider).app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    [check] = response.json()["checks"]["postgresql:connection"]
    assert check["status"] == "pass"
    assert check["componentType"] == "datastore"


async def test_a_query_past_the_requests_deadline_answers_504(
    make_settings: Callable[..., Settings], ready_url: str, tracer_provider: TracerProvider
) -> None:
    async with serve(build(make_settings, ready_url, tracer_provider).app) as client:
        response = await client.get("/slow", headers={"X-Request-Timeout": "0.3"})
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:problem:downstream-timeout"
    assert response.elapsed.total_seconds() < 2.0


async def test_database_down_and_back(
    make_settings: Callable[..., Settings], tracer_provider: TracerProvider
) -> None:
    with postgres_cluster() as cluster:
        async with fresh_database(cluster.url) as url:
            await prepared(url)
            service = build(make_settings, url, tracer_provider)
            async with serve(service.app) as client:
                assert (await client.post("/notes")).json() == {"notes": 1}
                await asyncio.to_thread(cluster.stop)

                down = await client.get("/health/ready")
                assert down.status_code == 503
                write = await client.post("/notes")
                assert write.status_code == 503, write.text
                assert write.headers["content-type"] == "application/problem+json"
                assert write.json()["type"] == "urn:problem:database-unavailable"
                assert write.headers["retry-after"] == "1"

                await asyncio.to_thread(cluster.start)

                async def ready() -> bool:
                    return (await client.get("/health/ready")).status_code == 200

                await eventually(ready, within=15, what="ready again without a restart")
                # What committed before the outage is still there.
                assert (await client.post("/notes")).json() == {"notes": 2}
