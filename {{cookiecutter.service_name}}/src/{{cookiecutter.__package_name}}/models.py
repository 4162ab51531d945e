"""The service's tables as SQLAlchemy models. Alembic compares them with the database:
``python -m {{ cookiecutter.__package_name }} migrate --new "what changed"`` writes the
migration for a change made here (README.md, "Database").

``items`` belongs to the example: drop it with the example, in a migration of its own.
"""

from __future__ import annotations

from service_chassis.database import CHASSIS_METADATA
from sqlalchemy import BigInteger, Identity, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
{%- if cookiecutter.saga != "none" %}

from .saga_models import SAGA_METADATA
{%- endif %}


class Base(DeclarativeBase):
    pass


class ItemRow(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)


# What the migrations create: the service's own tables, and the chassis's outbox and inbox.
METADATA: tuple[MetaData, ...] = (Base.metadata, CHASSIS_METADATA)
{%- if cookiecutter.saga != "none" %}

# The example saga's tables and the chassis's saga state (saga_models.py, migration 0002).
METADATA += SAGA_METADATA
{%- endif %}
