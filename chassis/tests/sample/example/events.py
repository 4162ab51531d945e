"""Example events: ``POST /events`` publishes one, and the subscriber below consumes it.

The subscriber runs inside the consumer's process span, so its log lines carry the trace id
and its outbound call continues the trace (with the message's baggage). A failure that
outlives the downstream client's own retries raises, and the consumer retries the message or
dead-letters it. To publish a follow-up event from a handler, ``await publisher.publish(...)``:
FastStream keeps the trace causal for a publish awaited inside the handler.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, status
from pydantic import BaseModel

from service_chassis import ResilientClient, Service
from service_chassis.messaging import Event, NewEvent, Publisher

from .downstream import DOWNSTREAM

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/events", tags=["events"])


class Accepted(BaseModel):
    id: uuid.UUID


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={503: {"description": "The broker did not take the event"}},
)
async def publish_event(
    new: NewEvent,
    publisher: Publisher,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Accepted:
    """Publish an event; 202 once the broker has it. An error answer means it was not
    published. Send an ``Idempotency-Key`` to retry safely: it becomes the event's id."""
    event = Event.create(new, idempotency_key=idempotency_key)
    await publisher.publish(event)
    return Accepted(id=event.id)


class ExampleHandler:
    """Calls the example downstream for each event, with the event id as idempotency key."""

    def __init__(self, downstream: ResilientClient) -> None:
        self.downstream = downstream

    async def __call__(self, event: Event) -> None:
        log.info("event received", event_id=str(event.id), event_type=event.type)
        if self.downstream.missing_url_variable is not None:
            return  # no downstream configured: receiving is the whole example
        # The event id lets the downstream deduplicate too, should this call be repeated.
        response = await self.downstream.get("", headers={"idempotency-key": str(event.id)})
        log.info("event handled", event_id=str(event.id), downstream_status=response.status_code)


def install(service: Service) -> None:
    service.include_router(router)
    if service.messaging is not None:
        service.messaging.subscribe(ExampleHandler(service.declare(DOWNSTREAM)))
