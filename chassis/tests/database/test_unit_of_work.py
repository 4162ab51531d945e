"""Units of work on real PostgreSQL: commit, rollback, the deadline as statement_timeout, and
failures as problems."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import func, insert, select, text

from service_chassis.database import Database, DatabaseTimeout, DatabaseUnavailable
from service_chassis.database.settings import DatabaseSettings
from service_chassis.resilience.deadline import Deadline, deadline_scope
from service_chassis.testing.servers import free_port

from .conftest import notes


async def count(database: Database) -> int:
    async with database.transaction() as work:
        return int(
            (await work.session.execute(select(func.count()).select_from(notes))).scalar_one()
        )


async def test_commits_when_the_block_ends(database: Database) -> None:
    async with database.transaction() as work:
        await work.session.execute(insert(notes).values(text="kept"))
    assert await count(database) == 1


async def test_rolls_back_when_the_block_raises(database: Database) -> None:
    async def change_then_fail() -> None:
        async with database.transaction() as work:
            await work.session.execute(insert(notes).values(text="dropped"))
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await change_then_fail()
    assert await count(database) == 0


async def test_statement_timeout_is_the_default_without_a_deadline(database: Database) -> None:
    async with database.transaction() as work:
        shown = (await work.session.execute(text("SHOW statement_timeout"))).scalar_one()
    assert shown == "10s"


async def test_a_deadline_shortens_the_statement_timeout(database: Database) -> None:
    with deadline_scope(Deadline.after(2.0)):
        async with database.transaction() as work:
            shown = (await work.session.execute(text("SHOW statement_timeout"))).scalar_one()
    assert shown.endswith("ms")
    assert 1500 < int(shown.removesuffix("ms")) <= 2000


async def test_a_slow_query_past_the_deadline_is_cancelled_in_the_database(
    database: Database, database_url: str
) -> None:
    started = time.monotonic()
    with deadline_scope(Deadline.after(0.3)), pytest.raises(DatabaseTimeout) as caught:
        async with database.transaction() as work:
            await work.session.execute(text("SELECT pg_sleep(5)"))
    assert time.monotonic() - started < 2.0
    assert caught.value.status == 504
    assert caught.value.type == "urn:problem:downstream-timeout"
    # The server stopped the query itself: nothing of it is still running.
    observer = await asyncpg.connect(database_url)
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


async def test_a_spent_deadline_starts_no_query(database: Database) -> None:
    with deadline_scope(Deadline.after(0.0)), pytest.raises(DatabaseTimeout):
        async with database.transaction():
            pytest.fail("the unit of work must not start")


async def test_a_full_pool_waits_no_longer_than_the_deadline(database: Database) -> None:
    # pool_size 2 + overflow 1: three transactions hold every connection.
    hold = asyncio.Event()

    async def holder() -> None:
        async with database.transaction() as work:
            await work.session.execute(text("SELECT 1"))
            await hold.wait()

    holders = [asyncio.create_task(holder()) for _ in range(3)]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    with deadline_scope(Deadline.after(0.3)), pytest.raises(DatabaseTimeout):
        async with database.transaction():
            pass
    assert time.monotonic() - started < 1.0
    hold.set()
    await asyncio.gather(*holders)


async def test_an_unreachable_database_is_a_503_problem(
    tracer_provider: TracerProvider, registry: CollectorRegistry
) -> None:
    database = Database(
        DatabaseSettings.for_url(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/nothing"),
        service_name="chassis-test",
        tracer_provider=tracer_provider,
        registry=registry,
    )
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with database.transaction():
                pass
        assert caught.value.status == 503
        assert caught.value.headers["Retry-After"] == "1"
    finally:
        await database.stop()
