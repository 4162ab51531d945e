"""The example saga's tables: orders (the orchestrator's side) and the reservations and charges
its participants hold, with the chassis's saga state (``sagas``, ``saga_events``).

They belong to the example saga: drop them with it, in a migration of their own.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from service_chassis import sagas
from sqlalchemy import DateTime, Integer, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class SagaExampleBase(DeclarativeBase):
    pass


class OrderRow(SagaExampleBase):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)
    # pending, then confirmed or cancelled when its saga ends
    status: Mapped[str] = mapped_column(String(20))
    saga_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReservationRow(SagaExampleBase):
    __tablename__ = "stock_reservations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))  # reserved or released


class ChargeRow(SagaExampleBase):
    __tablename__ = "payment_charges"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))  # charged or refunded


SAGA_METADATA: tuple[MetaData, ...] = (SagaExampleBase.metadata, sagas.metadata)
