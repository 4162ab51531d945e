"""A migrated database for a service's test session, when the service has one.

``migrated_database(settings, package)`` creates a fresh database on the test server
(``TEST_DATABASE_URL``, see ``postgres.py``), runs the service's migrations on it and yields
the environment that points the service at it (``DATABASE_URL``); it drops the database
afterwards. For a service without a database it yields nothing to set. Importable without the
``postgres`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from ..settings import ServiceSettings


@contextlib.contextmanager
def migrated_database(settings: ServiceSettings, package: str) -> Iterator[dict[str, str]]:
    if settings.database_system == "none":
        yield {}
        return
    from ..database.migrations import upgrade
    from ..database.settings import DatabaseSettings
    from ..migrate import migrations_folder
    from .postgres import create_database, drop_database

    folder = migrations_folder(package)
    if folder is None:
        raise AssertionError(f"{package} has a database but no migrations package")
    url = asyncio.run(create_database(prefix=package[:40]))
    try:
        asyncio.run(upgrade(folder, DatabaseSettings.for_url(url)))
        yield {"DATABASE_URL": url}
    finally:
        asyncio.run(drop_database(url))
