"""The tables the chassis itself reads and writes: the outbox and the inbox.

A service's migrations create them (its first migration does, as baked); ``CHASSIS_METADATA``
lets Alembic's autogenerate compare them with the database alongside the service's own models
(``target_metadata = [Base.metadata, CHASSIS_METADATA]``), and the chassis's tests check that
the baked migration matches them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

CHASSIS_METADATA = MetaData()

# Events written in the same transaction as the change they announce; the relay publishes them
# in ``position`` order and stamps ``sent_at``. ``headers`` keeps the trace context of the
# transaction that wrote the event, so the publish joins that trace.
outbox_table = Table(
    "outbox",
    CHASSIS_METADATA,
    Column("position", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("destination", String(255), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    # The relay's scan: unsent rows in order, whatever the size of the sent history.
    Index("ix_outbox_unsent", "position", postgresql_where=text("sent_at IS NULL")),
)

# Ids of the events whose effects are committed: written in the handler's transaction, so a
# redelivered event finds its id and has no second effect.
inbox_table = Table(
    "inbox",
    CHASSIS_METADATA,
    Column("event_id", String(255), primary_key=True),
    Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_inbox_handled_at", "handled_at"),
)
