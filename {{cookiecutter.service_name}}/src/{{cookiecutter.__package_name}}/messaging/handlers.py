"""The example subscriber's work: replace it with the service's own.

It runs inside the consumer's process span, so its log lines carry the trace id and its
outbound call continues the trace (with the message's baggage). To publish a follow-up event,
give it the ``EventPublisher`` and ``await publisher.publish(...)``: FastStream keeps the trace
causal for a publish awaited inside the handler.
"""

from __future__ import annotations

import structlog

from ..resilience.client import ResilientClient
from .events import Event

log = structlog.get_logger(__name__)


class ExampleHandler:
    """Calls the example downstream through the resilient client: a failure that outlives the
    client's own retries raises, and the consumer retries the message or dead-letters it."""

    def __init__(self, downstream: ResilientClient | None) -> None:
        self._downstream = downstream

    async def __call__(self, event: Event) -> None:
        log.info("event received", event_id=str(event.id), event_type=event.type)
        if self._downstream is None:
            return
        # The event id lets the downstream deduplicate too, should this call be repeated.
        response = await self._downstream.get("", headers={"idempotency-key": str(event.id)})
        log.info("event handled", event_id=str(event.id), downstream_status=response.status_code)
