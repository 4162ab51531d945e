"""Publish events: JSON bodies, the event id as the message id, a bounded wait for the broker.

A publish that the broker did not confirm raises ``EventsUnavailable``, a 503 problem with
``Retry-After``, so a route that lets it propagate answers RFC 9457 with no code of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

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

    async def publish(self, event: Event, *, destination: str | None = None) -> None:
        """Return once the broker confirmed the event; raise ``EventsUnavailable`` otherwise."""
        if not self._connected():
            raise EventsUnavailable(
                "The message broker is not connected yet; try again shortly.",
                headers={"retry-after": "1"},
            )
        try:
            async with asyncio.timeout(self._timeout):
                await self._transport.publish(
                    event.to_bytes(),
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
