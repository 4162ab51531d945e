"""The migrations on real PostgreSQL: up and down on an empty database, the ``migrate``
command as operators run it, and the models and the migrations agreeing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from service_chassis.database import DatabaseSettings
from service_chassis.database.migrations import downgrade, upgrade
from service_chassis.migrate import migrations_folder
from service_chassis.testing.postgres import fresh_database
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from {{ cookiecutter.__package_name }}.models import METADATA

from .conftest import PACKAGE

FOLDER = migrations_folder(PACKAGE)


@pytest.fixture
async def empty_url() -> AsyncIterator[str]:
    async with fresh_database(prefix="migrations") as url:
        yield url


async def tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


async def test_up_and_down_on_an_empty_database(empty_url: str) -> None:
    assert FOLDER is not None
    settings = DatabaseSettings.for_url(empty_url)
    await upgrade(FOLDER, settings)
    assert {"items", "outbox", "inbox", "alembic_version"} <= await tables(empty_url)
    await downgrade(FOLDER, settings, "base")
    assert await tables(empty_url) == {"alembic_version"}
    await upgrade(FOLDER, settings)  # and up again: the downgrade left nothing in the way
    assert {"items", "outbox", "inbox"} <= await tables(empty_url)


async def test_the_models_match_the_migrations(empty_url: str) -> None:
    """Nothing for autogenerate to write: every model change has its migration."""
    assert FOLDER is not None
    settings = DatabaseSettings.for_url(empty_url)
    await upgrade(FOLDER, settings)

    combined = MetaData()
    for metadata in METADATA:
        for table in metadata.tables.values():
            table.to_metadata(combined)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, combined))

    engine = create_async_engine(settings.database_url.url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


def migrate(database_url: str) -> subprocess.CompletedProcess[str]:
    """``python -m <package> migrate`` as an operator (or the init container) runs it."""
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, "migrate"],
        env={**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "INFO"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_migrate_command(empty_url: str) -> None:
    result = migrate(empty_url)
    assert result.returncode == 0, result.stderr
    password = empty_url.split("@")[0].rpartition(":")[2]
    assert f":{password}@" not in result.stdout + result.stderr  # credentials never logged
    again = migrate(empty_url)
    assert again.returncode == 0, again.stderr  # a second replica finds nothing to do


def test_a_bad_database_url_says_what_to_set() -> None:
    result = migrate("mysql://somewhere/db")
    assert result.returncode == 78
    assert "DATABASE_URL" in result.stderr
    assert "postgresql://" in result.stderr


def test_migrations_are_in_the_package() -> None:
    assert FOLDER is not None
    assert (Path(FOLDER) / "env.py").is_file()
