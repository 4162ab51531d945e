"""The example saga: placing an order is a transaction across three services, so it runs as a
saga that this service orchestrates (``participants.py`` is the other side).

    hold-order      (here)       compensation: cancel the order
    reserve-stock   (stock)      compensation: release the reservation
    charge-payment  (payments)   compensation: refund the charge
    confirm-order   (here)

``POST /orders`` writes the pending order and starts its saga in one transaction and answers
202; ``GET /orders/{id}`` shows where it stands, and ``/sagas`` (operators only: keep it off
the gateway) shows every step. A saga is the right tool only when the operation cannot live in
one service's database: see README.md, "The example saga".

``STOCK_URL`` and ``PAYMENTS_URL`` name the participants (this service's own URL works for a
one-service try: it serves both sides).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, Field
from service_chassis import IDEMPOTENCY_KEY, Downstream, Problem, ResilientClient, Service
from service_chassis.database import DatabaseDependency
from service_chassis.sagas import (
    SagaDefinition,
    SagaOrchestrator,
    SagaRunner,
    SagaStep,
    StepContext,
    StepRejected,
    create_saga_metrics,
    saga_routes,
)

from ..saga_models import OrderRow

STOCK = Downstream("stock", optional=True)
PAYMENTS = Downstream("payments", optional=True)
SAGA = "place-order"

router = APIRouter(prefix="/orders", tags=["orders"])


class NewOrder(BaseModel):
    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=10_000)
    amount_cents: int = Field(ge=1, le=100_000_000)


class Order(NewOrder):
    id: uuid.UUID
    status: str
    saga_id: uuid.UUID


class OrderNotFound(Problem):
    status = 404
    type = "urn:problem:order-not-found"
    title = "Order not found"


class ParticipantRefusedCompensation(Exception):
    """A compensation answered other than 2xx: retried with backoff, then an operator's."""


def place_order(stock: ResilientClient, payments: ResilientClient) -> SagaDefinition:
    """The saga's steps, each an action and the compensation that undoes it."""

    async def hold_order(context: StepContext) -> None:
        return None  # the order was written pending with the saga; undone by cancel_order

    async def cancel_order(context: StepContext) -> None:
        await _set_status(context, "cancelled")

    async def reserve_stock(context: StepContext) -> Mapping[str, Any]:
        body = {"sku": context.data["sku"], "quantity": context.data["quantity"]}
        answer = _action_answer(await stock.post("/reservations", json=body, headers=_key(context)))
        return {"reservation_id": answer["id"]}

    async def release_stock(context: StepContext) -> None:
        path = f"/reservations/{context.action_key}/release"
        _compensation_answer(await stock.post(path, headers=_key(context)))

    async def charge_payment(context: StepContext) -> Mapping[str, Any]:
        body = {"amount_cents": context.data["amount_cents"]}
        answer = _action_answer(await payments.post("/charges", json=body, headers=_key(context)))
        return {"charge_id": answer["id"]}

    async def refund_payment(context: StepContext) -> None:
        path = f"/charges/{context.action_key}/refund"
        _compensation_answer(await payments.post(path, headers=_key(context)))

    async def confirm_order(context: StepContext) -> None:
        await _set_status(context, "confirmed")

    return SagaDefinition(
        SAGA,
        [
            SagaStep("hold-order", hold_order, cancel_order),
            SagaStep("reserve-stock", reserve_stock, release_stock),
            SagaStep("charge-payment", charge_payment, refund_payment),
            SagaStep("confirm-order", confirm_order),
        ],
        timeout=timedelta(minutes=2),
        compensation_attempts=5,
    )


def _key(context: StepContext) -> dict[str, str]:
    # The same key on every try: the participant acts once (and the client may retry it).
    return {IDEMPOTENCY_KEY: context.idempotency_key}


def _action_answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == status.HTTP_409_CONFLICT:
        raise StepRejected(response.json().get("type", "refused"))
    response.raise_for_status()  # another 4xx: a fault, so compensate as if it acted
    answer: dict[str, Any] = response.json()
    return answer


def _compensation_answer(response: httpx.Response) -> None:
    if not response.is_success:
        raise ParticipantRefusedCompensation(str(response.status_code))


async def _set_status(context: StepContext, order_status: str) -> None:
    assert context.work is not None  # the orchestrator runs on the service's database
    row = await context.work.session.get(
        OrderRow, uuid.UUID(context.data["order_id"]), with_for_update=True
    )
    if row is not None:
        row.status = order_status


def sagas_of(request: Request) -> SagaOrchestrator:
    orchestrator: SagaOrchestrator = request.app.state.sagas
    return orchestrator


Sagas = Annotated[SagaOrchestrator, Depends(sagas_of)]
OrderId = Annotated[uuid.UUID, Path()]


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def create_order(
    new: NewOrder, response: Response, database: DatabaseDependency, sagas: Sagas
) -> Order:
    """Accepted, not done: the saga places the order; poll ``GET /orders/{id}``."""
    order_id = uuid.uuid4()
    async with database.transaction() as work:
        data = {"order_id": str(order_id), **new.model_dump()}
        saga_id = await sagas.start(work.session, SAGA, data)
        work.session.add(
            OrderRow(id=order_id, status="pending", saga_id=saga_id, **new.model_dump())
        )
    response.headers["location"] = f"/orders/{order_id}"
    return Order(id=order_id, status="pending", saga_id=saga_id, **new.model_dump())


@router.get("/{order_id}", responses={404: {"description": "No such order"}})
async def get_order(order_id: OrderId, database: DatabaseDependency) -> Order:
    async with database.transaction() as work:
        row = await work.session.get(OrderRow, order_id)
        if row is None:
            raise OrderNotFound(f"There is no order {order_id}.")
        return Order(
            id=row.id,
            sku=row.sku,
            quantity=row.quantity,
            amount_cents=row.amount_cents,
            status=row.status,
            saga_id=row.saga_id,
        )


def install(service: Service) -> None:
    if service.database is None:
        return  # the example saga needs the database (DATABASE_SYSTEM=postgres)
    stock, payments = service.declare(STOCK), service.declare(PAYMENTS)
    orchestrator = SagaOrchestrator(
        service.database,
        [place_order(stock, payments)],
        metrics=create_saga_metrics(service.metrics.registry),
    )
    service.app.state.sagas = orchestrator
    service.components.append(SagaRunner(orchestrator))
    service.include_router(router)
    service.include_router(saga_routes(orchestrator))
