"""Where sagas persist: one row per saga, one per transition (its history).

Add ``metadata``'s tables to the service's migrations (the baked Alembic env includes them).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

sagas = Table(
    "sagas",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("status", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("data", JSONB, nullable=False),
    # The W3C headers of the request that started it: every step continues that trace.
    Column("trace_context", JSONB, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    # A compensation's next try waits for its backoff; a step awaiting its reply waits until
    # the reply's deadline.
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    # "action" or "compensation" while a step's command is out and its reply not yet in.
    Column("awaiting", String(16), nullable=True),
    Index("sagas_ready", "status", "next_attempt_at"),
)

saga_events = Table(
    "saga_events",
    metadata,
    Column("saga_id", Uuid, ForeignKey("sagas.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    # started | action | compensation | retried | abandoned
    Column("kind", String(32), nullable=False),
    Column("step", String(100), nullable=True),
    Column("outcome", String(32), nullable=False),
    # An error's class or a problem's type: never an exception's message, which may hold data.
    Column("detail", String(300), nullable=True),
    Column("status", String(32), nullable=False),
)
