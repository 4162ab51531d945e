"""``python -m <package> migrate``: the service's Alembic migrations, when it has a database.

Kept apart from ``database/`` so a service without the ``postgres`` extra can still answer the
command, with a message instead of an import error.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

NO_DATABASE = 2


def migrations_folder(package: str) -> Path | None:
    """``<package>/migrations``, where a service baked with a database keeps its migrations."""
    spec = importlib.util.find_spec(f"{package}.migrations")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def main(package: str, argv: Sequence[str]) -> int:
    """Run the migrations (see ``database.migrations.main``); the exit status."""
    folder = migrations_folder(package)
    if folder is None:
        print(f"{package} has no database: there is nothing to migrate", file=sys.stderr)
        return NO_DATABASE
    from .database.migrations import main as migrate

    return migrate(folder, argv)
