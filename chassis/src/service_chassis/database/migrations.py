"""Migrations with Alembic: ``python -m <package> migrate`` and the service's ``env.py``.

``upgrade`` runs a service's migrations to ``head`` (``downgrade`` back to a revision) in one
transaction, under a PostgreSQL advisory lock so that replicas starting together (one init
container each) migrate one after the other: the first does the work, the rest find nothing
to do. PostgreSQL's DDL is transactional, so a failed migration leaves the schema as it was.

A service's ``env.py`` is one call, ``run_migrations(target_metadata)``: it runs on the
connection ``upgrade`` hands over, or, under the ``alembic`` command (``alembic revision
--autogenerate``), on a connection of its own to ``DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ..configuration import EX_CONFIG, ConfigurationError
from .settings import DatabaseSettings
from .url import DatabaseURL

log = structlog.get_logger(__name__)

# pg_advisory_xact_lock key: any constant shared by every replica of every service version.
LOCK_KEY = 0x5E_C4A5_515
CONNECTION = "connection"


def alembic_config(script_location: Path, url: DatabaseURL | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # Module names must be identifiers (mypy checks the migrations): a letter first.
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    # A new migration is formatted and linted as the rest of the service is.
    config.set_section_option("post_write_hooks", "hooks", "ruff_format, ruff_fix")
    for name, options in (("ruff_format", "format"), ("ruff_fix", "check --fix --quiet")):
        config.set_section_option("post_write_hooks", f"{name}.type", "module")
        config.set_section_option("post_write_hooks", f"{name}.module", "ruff")
        config.set_section_option(
            "post_write_hooks", f"{name}.options", f"{options} REVISION_SCRIPT_FILENAME"
        )
    if url is not None:
        # ConfigParser interpolation: a % in the password must be doubled.
        rendered = url.url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


async def _migrate(
    script_location: Path, settings: DatabaseSettings, revision: str, *, action: str
) -> None:
    url = settings.database_url
    engine = create_async_engine(
        url.url, poolclass=NullPool, connect_args={"timeout": settings.connect_timeout_seconds}
    )
    config = alembic_config(script_location, url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            await connection.run_sync(_run, config, revision, action)
    finally:
        await engine.dispose()


def _run(connection: Connection, config: Config, argument: str, action: str) -> None:
    config.attributes[CONNECTION] = connection
    if action == "downgrade":
        command.downgrade(config, argument)
    elif action == "revision":
        command.revision(config, message=argument, autogenerate=True)
    else:
        command.upgrade(config, argument)


async def upgrade(
    script_location: Path, settings: DatabaseSettings, revision: str = "head"
) -> None:
    await _migrate(script_location, settings, revision, action="upgrade")


async def downgrade(script_location: Path, settings: DatabaseSettings, revision: str) -> None:
    await _migrate(script_location, settings, revision, action="downgrade")


async def new_revision(script_location: Path, settings: DatabaseSettings, message: str) -> None:
    """Write a migration from what the models have and the database (at head) lacks."""
    await _migrate(script_location, settings, message, action="revision")


def run_migrations(target_metadata: MetaData | Sequence[MetaData]) -> None:
    """The body of a service's ``env.py``."""
    connection: Connection | None = context.config.attributes.get(CONNECTION)
    if connection is not None:
        _configure_and_run(connection, target_metadata)
        return
    if context.is_offline_mode():
        url = DatabaseSettings.from_environment().database_url
        context.configure(
            url=url.url.render_as_string(hide_password=False),
            target_metadata=target_metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_online(target_metadata))


async def _online(target_metadata: MetaData | Sequence[MetaData]) -> None:
    engine = create_async_engine(
        DatabaseSettings.from_environment().database_url.url, poolclass=NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run, target_metadata)
    finally:
        await engine.dispose()


def _configure_and_run(
    connection: Connection, target_metadata: MetaData | Sequence[MetaData]
) -> None:
    metadata: Any = target_metadata
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


USAGE = 'usage: migrate [--downgrade <revision> | --new "what changed"]'


def main(script_location: Path, argv: Sequence[str]) -> int:
    """``migrate`` (to head), ``migrate --downgrade <revision>``, or ``migrate --new
    "message"`` (a new migration from the models); the exit status."""
    try:
        settings = DatabaseSettings.from_environment()
    except ConfigurationError as error:
        print("\n".join(error.problems), file=sys.stderr)
        return EX_CONFIG
    args = list(argv)
    if args[:1] == ["--new"] and len(args) == 2:
        asyncio.run(new_revision(script_location, settings, args[1]))
        return 0
    if args[:1] == ["--downgrade"] and len(args) == 2:
        asyncio.run(downgrade(script_location, settings, args[1]))
        log.info("migrated down", revision=args[1], url=settings.database_url.redacted())
        return 0
    if args:
        print(USAGE, file=sys.stderr)
        return 2
    asyncio.run(upgrade(script_location, settings))
    log.info("migrated", revision="head", url=settings.database_url.redacted())
    return 0
