"""Alembic's entry point: the chassis runs the migrations against ``DATABASE_URL``."""

from service_chassis.database.migrations import run_migrations

from {{ cookiecutter.__package_name }}.models import METADATA

run_migrations(METADATA)
