"""Alembic migrations: ``python -m {{ cookiecutter.__package_name }} migrate`` runs them."""
