from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service_chassis.sagas import metadata
from service_chassis.testing.postgres import fresh_database


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A database of this test's own on the shared server, dropped afterwards."""
    async with fresh_database(prefix="sagas") as url:
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=5)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()
