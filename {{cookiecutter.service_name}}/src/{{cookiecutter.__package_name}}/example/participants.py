"""The participants' side of the example saga (``orders.py`` orchestrates it): stock
reservations and payment charges. Every service baked with the example serves both, so three
bakes (orders, stock, payments) form the saga.

A participant's rules, from the saga pattern: an action and its compensation are each safe to
repeat (the orchestrator sends the same ``Idempotency-Key`` after a crash, and the answer is the
first one's); a compensation names the action it undoes by that action's key, and succeeds even
when the action never arrived (it leaves a tombstone, so a late action does nothing); a refusal
is a 409 problem, which the orchestrator takes as "no effect, nothing to undo".
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, status
from pydantic import BaseModel, Field
from service_chassis import Problem, Service
from service_chassis.database import DatabaseDependency, UnitOfWork
from sqlalchemy.dialects.postgresql import insert

from ..saga_models import ChargeRow, ReservationRow

router = APIRouter(tags=["saga participants"])

# What this example's stock and payment rules refuse, so a demo can make a saga compensate.
STOCK_PER_RESERVATION = 100
CHARGE_LIMIT_CENTS = 100_000
# Effect ids derive from the action's idempotency key: the same key, the same row.
EFFECTS = uuid.UUID("5d1b0c52-9a0e-4f4e-8d55-2a9e2f0c7b11")

Key = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)]
# A compensation names the action it undoes by that action's key.
ActionKey = Annotated[str, Path(min_length=1, max_length=200)]


class NewReservation(BaseModel):
    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=10_000)


class Reservation(BaseModel):
    """A reservation as it stands: a tombstone (released before anything was reserved) has
    no sku and a quantity of 0."""

    id: uuid.UUID
    sku: str
    quantity: int
    status: str


class NewCharge(BaseModel):
    amount_cents: int = Field(ge=1, le=100_000_000)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class Charge(BaseModel):
    """A charge as it stands: a tombstone (refunded before anything was charged) has an
    amount of 0."""

    id: uuid.UUID
    amount_cents: int
    currency: str
    status: str


class OutOfStock(Problem):
    status = 409
    type = "urn:problem:out-of-stock"
    title = "Out of stock"


class PaymentDeclined(Problem):
    status = 409
    type = "urn:problem:payment-declined"
    title = "Payment declined"


def effect_id(key: str) -> uuid.UUID:
    return uuid.uuid5(EFFECTS, key)


@router.post("/reservations", status_code=status.HTTP_201_CREATED)
async def reserve(new: NewReservation, key: Key, database: DatabaseDependency) -> Reservation:
    if new.quantity > STOCK_PER_RESERVATION:
        raise OutOfStock(f"At most {STOCK_PER_RESERVATION} of {new.sku} can be reserved.")
    async with database.transaction() as work:
        await _insert_once(work, ReservationRow, effect_id(key), "reserved", new.model_dump())
        row = await work.session.get(ReservationRow, effect_id(key))
        assert row is not None
        return Reservation(id=row.id, sku=row.sku, quantity=row.quantity, status=row.status)


@router.post("/reservations/{action_key}/release")
async def release(action_key: ActionKey, database: DatabaseDependency) -> Reservation:
    """Compensation: release what the action with ``action_key`` reserved, if anything."""
    async with database.transaction() as work:
        tombstone = {"sku": "", "quantity": 0}
        await _insert_once(work, ReservationRow, effect_id(action_key), "released", tombstone)
        row = await work.session.get(ReservationRow, effect_id(action_key), with_for_update=True)
        assert row is not None
        row.status = "released"
        return Reservation(id=row.id, sku=row.sku, quantity=row.quantity, status=row.status)


@router.post("/charges", status_code=status.HTTP_201_CREATED)
async def charge(new: NewCharge, key: Key, database: DatabaseDependency) -> Charge:
    if new.amount_cents > CHARGE_LIMIT_CENTS:
        raise PaymentDeclined(f"Charges over {CHARGE_LIMIT_CENTS} cents are declined.")
    async with database.transaction() as work:
        await _insert_once(work, ChargeRow, effect_id(key), "charged", new.model_dump())
        row = await work.session.get(ChargeRow, effect_id(key))
        assert row is not None
        return Charge(
            id=row.id, amount_cents=row.amount_cents, currency=row.currency, status=row.status
        )


@router.post("/charges/{action_key}/refund")
async def refund(action_key: ActionKey, database: DatabaseDependency) -> Charge:
    """Compensation: refund what the action with ``action_key`` charged, if anything."""
    async with database.transaction() as work:
        tombstone = {"amount_cents": 0, "currency": "EUR"}
        await _insert_once(work, ChargeRow, effect_id(action_key), "refunded", tombstone)
        row = await work.session.get(ChargeRow, effect_id(action_key), with_for_update=True)
        assert row is not None
        row.status = "refunded"
        return Charge(
            id=row.id, amount_cents=row.amount_cents, currency=row.currency, status=row.status
        )


async def _insert_once(
    work: UnitOfWork,
    model: type[ReservationRow] | type[ChargeRow],
    row_id: uuid.UUID,
    row_status: str,
    values: dict[str, object],
) -> None:
    """The first call with a key acts; a repeat finds its row and changes nothing."""
    statement = insert(model).values(id=row_id, status=row_status, **values)
    await work.session.execute(statement.on_conflict_do_nothing(index_elements=["id"]))


def install(service: Service) -> None:
    service.include_router(router)
