"""The example endpoint: ``POST /events`` publishes an event and answers 202 with its id."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import structlog
from fastapi import APIRouter, Request, status
from pydantic import BaseModel

from ..problems import Problem
from .events import Event, NewEvent

if TYPE_CHECKING:
    from . import Messaging

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/events", tags=["events"])


class Accepted(BaseModel):
    id: uuid.UUID


class EventsUnavailable(Problem):
    status = 503
    type = "urn:problem:events-unavailable"
    title = "Events unavailable"


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={503: {"description": "The broker did not take the event"}},
)
async def publish_event(new: NewEvent, request: Request) -> Accepted:
    messaging: Messaging = request.app.state.messaging
    event = Event.create(new)
    if not messaging.component.started:
        raise EventsUnavailable(
            "The message broker is not connected yet; try again shortly.",
            headers={"retry-after": "1"},
        )
    try:
        await messaging.publisher.publish(event)
    except Exception as error:  # each broker client raises its own errors
        log.warning(
            "event not published: the broker did not confirm it",
            event_id=str(event.id),
            error_type=type(error).__qualname__,
        )
        raise EventsUnavailable(
            "The message broker did not confirm the event; try again shortly.",
            headers={"retry-after": "1"},
        ) from None
    return Accepted(id=event.id)
