"""Real PostgreSQL for tests: a fresh database per test on a shared server, and a cluster of
the test's own to stop and start (a database outage without touching the shared server).

``TEST_DATABASE_URL`` names the shared server (default: the one ``scripts/services.sh``
starts on 127.0.0.1:5432, user and password ``postgres``). A server that cannot be reached
fails the test: it is never skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
from sqlalchemy import MetaData

from .servers import free_port

SHARED_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
PG_BIN = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


def server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", SHARED_URL)


def with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_database(url: str | None = None, prefix: str = "test") -> str:
    """A new, empty database with a unique name on the server of ``url``; its URL."""
    server = url or server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    return with_database(server, name)


async def drop_database(url: str) -> None:
    """Drop the database ``url`` names, even with connections still open to it."""
    base, _, name = url.rpartition("/")
    await _admin(f"{base}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def fresh_database(url: str | None = None, prefix: str = "test") -> AsyncIterator[str]:
    """A new, empty database with a unique name; its URL. Dropped afterwards."""
    created = await create_database(url, prefix)
    try:
        yield created
    finally:
        await drop_database(created)


def _as_postgres(*command: str) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


class PostgresCluster:
    """A PostgreSQL server of the test's own on a free loopback port, to stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.url = f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> PostgresCluster:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        password = self.root / "password"
        password.write_text("postgres\n")
        if os.geteuid() == 0:
            shutil.chown(password, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={password}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c max_connections=50"
        )
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Fast shutdown: open connections are terminated, as in a failover."""
        subprocess.run(
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


async def create_tables(url: str, *metadata: MetaData) -> None:
    """Create the tables of ``metadata`` in the database at ``url`` (tests without Alembic)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from ..database.url import DatabaseURL

    engine = create_async_engine(DatabaseURL.parse(url).url)
    try:
        async with engine.begin() as connection:
            for each in metadata:
                await connection.run_sync(each.create_all)
    finally:
        await engine.dispose()
