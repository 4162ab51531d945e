"""Publish events: JSON bodies, the event id as the message id, a bounded wait for the broker.

A publish that the broker did not confirm raises ``EventsUnavailable``, a 503 problem with
``Retry-After``, so a route that lets it propagate answers RFC 9457 with no code of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from pydantic_core import PydanticSerializationError

from ..problems import Problem
from .events import Event
from .settings import MessagingSettings
from .transport import Transport

log = structlog.get_logger(__name__)

JSON = "application/json"


class EventsUnavailable(Problem):
    status = 503
    type = "urn:problem:events-unavailable"
    title = "Events unavailable"


class EventNotJSON(Problem):
    """The event holds what JSON cannot carry (a lone surrogate): the caller's to fix."""

    status = 422
    type = "urn:problem:event-not-json"
    title = "Event not JSON"


class EventTooLarge(Problem):
    """Larger, once encoded, than the broker takes: retrying cannot help."""

    status = 413
    type = "urn:problem:event-too-large"
    title = "Event too large"


def _always_connected() -> bool:
    return True


class EventPublisher:
    def __init__(
        self,
        transport: Transport,
        settings: MessagingSettings,
        *,
        connected: Callable[[], bool] = _always_connected,
    ) -> None:
        self._transport = transport
        self._destination = settings.destination
        self._timeout = settings.publish_timeout_seconds
        self._connected = connected
        self._max_bytes = settings.max_message_bytes

    def encode(self, event: Event) -> bytes:
        """The event's body as published; 422 or 413 problems for what cannot be sent."""
        return self._encode(event)

    def _encode(self, event: Event) -> bytes:
        try:
            body = event.to_bytes()
        except PydanticSerializationError:
            raise EventNotJSON(
                "The event holds a string JSON cannot carry (a lone surrogate)."
            ) from None
        if len(body) > self._max_bytes:
            raise EventTooLarge(
                f"The event is {len(body)} bytes once encoded; the broker takes at most "
                f"{self._max_bytes} (MESSAGING_MAX_MESSAGE_BYTES).",
                extensions={"size": len(body), "limit": self._max_bytes},
            )
        return body

    async def publish(self, event: Event, *, destination: str | None = None) -> None:
        """Return once the broker confirmed the event; raise ``EventsUnavailable`` otherwise."""
        body = self._encode(event)
        if not self._connected():
            raise EventsUnavailable(
                "The message broker is not connected yet; try again shortly.",
                headers={"retry-after": "1"},
            )
        try:
            async with asyncio.timeout(self._timeout):
                await self._transport.publish(
                    body,
                    destination=destination or self._destination,
                    message_id=str(event.id),
                    headers={"content-type": JSON},
                )
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
