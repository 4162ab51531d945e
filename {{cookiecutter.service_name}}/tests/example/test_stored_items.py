"""The example resource in the database: replace these tests with your own along with it."""

from __future__ import annotations

import os

import asyncpg
import httpx
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from service_chassis.database import Database, DatabaseDependency, outbox_table
from sqlalchemy import func, select, text


async def test_an_item_is_created_and_read_back(client: httpx.AsyncClient) -> None:
    created = await client.post("/items", json={"name": "widget", "quantity": 3})
    assert created.status_code == 201
    item = created.json()
    assert (await client.get(f"/items/{item['id']}")).json() == item


async def test_the_first_migration_seeds_item_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/1")
    assert response.status_code == 200
    assert response.json()["name"] == "example"


async def test_a_missing_item_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/999999")
    assert response.status_code == 404
    assert response.json()["type"] == "urn:problem:item-not-found"


async def test_an_id_too_large_for_the_column_is_a_422_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/items/99999999999999999999999")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_bad_item_is_a_422_problem_field_by_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "", "quantity": 0})
    assert response.status_code == 422
    pointers = {error["pointer"] for error in response.json()["errors"]}
    assert pointers == {"#/body/name", "#/body/quantity"}


async def test_queries_are_client_spans_counted_on_the_request_span(
    client: httpx.AsyncClient, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    assert (await client.get("/items/1")).status_code == 200
    spans = span_exporter.get_finished_spans()
    [query] = [span for span in spans if span.name == "SELECT items"]
    attributes = dict(query.attributes or {})
    assert attributes["db.system.name"] == "postgresql"
    assert attributes["db.operation.name"] == "SELECT"
    assert attributes["db.collection.name"] == "items"
    [server] = [span for span in spans if span.name == "GET /items/{item_id}"]
    assert query.parent is not None
    assert server.context is not None
    assert query.context is not None
    assert query.context.trace_id == server.context.trace_id
    assert (server.attributes or {})["db.client.query_count"] == 2  # SET LOCAL, SELECT


async def test_statements_and_the_pool_are_measured(client: httpx.AsyncClient) -> None:
    assert (await client.get("/items/1")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'db_client_operation_duration_seconds_count{db_collection_name="items"' in metrics
    assert "db_client_connection_max{" in metrics
    assert 'db_client_connection_state="used"' in metrics
    assert "db_client_connection_wait_time_seconds_bucket{" in metrics


async def test_readiness_checks_the_database(client: httpx.AsyncClient) -> None:
    ready = await client.get("/health/ready")
    assert ready.json()["checks"]["postgresql:connection"][0]["status"] == "pass"


async def test_a_slow_query_is_cancelled_at_the_requests_deadline(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A statement runs with the request's remaining time as its timeout: the server cancels
    it (nothing of it left in pg_stat_activity) and the request answers 504."""
    router = APIRouter()

    @router.get("/slow")
    async def slow(database: DatabaseDependency) -> None:
        async with database.transaction() as work:
            await work.session.execute(text("SELECT pg_sleep(5)"))

    app.include_router(router)
    response = await client.get("/slow", headers={"X-Request-Timeout": "0.3"})
    assert response.status_code == 504
    assert response.json()["type"] == "urn:problem:downstream-timeout"
    observer = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        running = await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()"
            # This test's database only: other tests run the same query elsewhere.
            " AND datname = current_database()"
        )
    finally:
        await observer.close()
    assert running == 0


async def test_without_messaging_an_item_writes_no_event(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Messaging is off in these tests (conftest); test_item_events.py, in a bake with a
    broker, follows the event through the outbox to the broker."""
    before = await outbox_rows(app)
    assert (await client.post("/items", json={"name": "quiet", "quantity": 1})).status_code == 201
    assert await outbox_rows(app) == before


async def outbox_rows(app: FastAPI) -> int:
    database: Database = app.state.database
    async with database.transaction() as work:
        assert not work.publishes
        query = select(func.count()).select_from(outbox_table)
        return int((await work.session.execute(query)).scalar_one())
