from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import insert, text

from service_chassis import Service, ServiceSettings
from service_chassis.database import DatabaseDependency, current_unit_of_work
from service_chassis.messaging.events import Event

from . import effects, orders

router = APIRouter()


@router.post("/orders", status_code=201)
async def place(database: DatabaseDependency, fail: bool = False) -> dict[str, str]:
    async with database.transaction() as work:
        event_id = await work.publish_new("order.placed", {})
        await work.session.execute(insert(orders).values(event_id=str(event_id)))
        if fail:
            raise RuntimeError("rolled back after writing the order and its event")
    return {"id": str(event_id)}


@router.get("/slow")
async def slow(database: DatabaseDependency, seconds: float = 1.0) -> dict[str, float]:
    async with database.transaction() as work:
        await work.session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    return {"slept": seconds}


async def handle(event: Event) -> None:
    await asyncio.sleep(float(os.environ.get("HANDLER_DELAY_SECONDS", "0")))
    work = current_unit_of_work.get()
    assert work is not None, "the inbox runs the handler in a transaction"
    await work.session.execute(insert(effects).values(event_id=str(event.id)))


def create_app(
    settings: ServiceSettings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    service = Service(settings or ServiceSettings(), tracer_provider=tracer_provider)
    service.include_router(router)
    if service.messaging is not None:
        service.messaging.subscribe(handle)
    return service.app
