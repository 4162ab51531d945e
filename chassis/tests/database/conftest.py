"""Database tests run against real PostgreSQL: a fresh database per test, dropped after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import BigInteger, Column, Identity, MetaData, String, Table

from service_chassis.database import CHASSIS_METADATA, Database, DatabaseSettings
from service_chassis.health import HealthRegistry
from service_chassis.testing.postgres import fresh_database

TEST_METADATA = MetaData()
notes = Table(
    "notes",
    TEST_METADATA,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("text", String(200), nullable=False),
)


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def health() -> HealthRegistry:
    return HealthRegistry(service_id="test", release_id="0")


@pytest.fixture
async def database(
    database_url: str,
    tracer_provider: TracerProvider,
    registry: CollectorRegistry,
    health: HealthRegistry,
) -> AsyncIterator[Database]:
    database = Database(
        DatabaseSettings.for_url(database_url, pool_size=2, max_overflow=1),
        service_name="chassis-test",
        tracer_provider=tracer_provider,
        registry=registry,
        health=health,
    )
    async with database.engine.begin() as connection:
        await connection.run_sync(CHASSIS_METADATA.create_all)
        await connection.run_sync(TEST_METADATA.create_all)
    await database.start()
    yield database
    await database.stop()
