"""Publish events: JSON bodies, the event id as the message id, a bounded wait for the broker."""

from __future__ import annotations

import asyncio

from .events import Event
from .settings import MessagingSettings
from .transport import Transport

JSON = "application/json"


class EventPublisher:
    def __init__(self, transport: Transport, settings: MessagingSettings) -> None:
        self._transport = transport
        self._destination = settings.destination
        self._timeout = settings.publish_timeout_seconds

    async def publish(self, event: Event, *, destination: str | None = None) -> None:
        """Return once the broker confirmed the event; raise (TimeoutError, ...) otherwise."""
        async with asyncio.timeout(self._timeout):
            await self._transport.publish(
                event.to_bytes(),
                destination=destination or self._destination,
                message_id=str(event.id),
                headers={"content-type": JSON},
            )
