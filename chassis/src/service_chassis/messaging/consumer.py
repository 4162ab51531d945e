"""The reliable consumer: validate, deduplicate, retry with backoff, dead-letter.

Guarantees, for any broker:

- the message is acked (committed) only after this returns: after the handler succeeded, or
  after the message was published to the dead letters and the broker confirmed it;
- a failing handler is retried ``max_attempts`` times within the delivery, with exponential
  backoff and jitter, then the message goes to the dead letters with the error recorded;
- a body that is not a valid event goes to the dead letters at once, without retries;
- a message whose id was already handled (a redelivery) is skipped and counted;
- if even the dead-letter publish fails, this raises: the message is nacked and redelivered,
  never dropped.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from faststream.message import StreamMessage
from opentelemetry import trace
from pydantic import ValidationError

from ..outages import OutageLog
from ..resilience.errors import DownstreamBusy, DownstreamCircuitOpen, DownstreamError
from .events import Event
from .idempotency import IdempotencyStore
from .metrics import MessagingMetrics
from .settings import MessagingSettings
from .transport import Transport

log = structlog.get_logger(__name__)

# A handler failing with these waits for its dependency instead of spending an attempt; so
# does one failing with a transient error while that downstream's breaker is not closed.
DEPENDENCY_UNAVAILABLE = (DownstreamCircuitOpen, DownstreamBusy)
TRANSIENT = frozenset({"downstream_error", "unavailable", "timeout", "deadline_exceeded"})
# Between tries while a dependency is unavailable: the breaker's Retry-After, within bounds
# that keep the broker's ack timers (NATS ack wait, 30 s by default) from running out.
MIN_DEPENDENCY_WAIT = 0.1
MAX_DEPENDENCY_WAIT = 10.0

EventHandler = Callable[[Event], Awaitable[None]]

# Headers a dead letter carries, so whoever inspects or replays it knows what happened.
REASON_HEADER = "x-dead-letter-reason"
ERROR_HEADER = "x-dead-letter-error"
ATTEMPTS_HEADER = "x-dead-letter-attempts"
SOURCE_HEADER = "x-dead-letter-source"
TIME_HEADER = "x-dead-letter-time"

# Fresh ones are written by the publish (the dead letter belongs to the consumer's trace).
_NOT_COPIED = frozenset({"traceparent", "tracestate", "baggage", "nats-msg-id"})
_MAX_ERROR_CHARS = 1000


class DeadLetterFailed(RuntimeError):
    """The dead-letter publish failed: the message must be redelivered, not acked."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_delay: float
    max_delay: float

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Exponential backoff after ``attempt`` failures, with half of it jittered."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * rand()


class ReliableConsumer:
    def __init__(
        self,
        *,
        transport: Transport,
        handler: EventHandler,
        store: IdempotencyStore,
        metrics: MessagingMetrics,
        settings: MessagingSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        dependency_down: Callable[[str], bool] = lambda downstream: False,
    ) -> None:
        self.handler = handler
        self._transport = transport
        self._store = store
        self._metrics = metrics
        self._source = settings.destination
        self._dead_letters = settings.dead_letter_destination
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_delay=settings.retry_backoff_seconds,
            max_delay=settings.retry_backoff_max_seconds,
        )
        self._sleep = sleep
        self._dependency_down = dependency_down
        self._outage = OutageLog("consumer's dependency")

    async def __call__(self, message: StreamMessage[Any]) -> None:
        message_id = self._transport.message_id(message)
        try:
            event = Event.model_validate_json(message.body)
        except ValidationError as error:
            problems = _validation_problems(error)
            log.error(
                "message body is not a valid event: sent to the dead letters without retrying",
                message_id=message_id,
                destination=self._source,
                errors=problems,
            )
            await self._dead_letter(message, message_id, "invalid", "; ".join(problems), 0)
            return
        if not await self._store.claim(message_id):
            self._metrics.duplicates.labels(self._source).inc()
            log.info("duplicate message skipped", message_id=message_id, destination=self._source)
            return
        try:
            await self._handle(message, message_id, event)
        except BaseException:
            # Nacked or cancelled: no effect was recorded, so a redelivery may try again.
            await self._store.release(message_id)
            raise
        await self._store.complete(message_id)

    async def _handle(self, message: StreamMessage[Any], message_id: str, event: Event) -> None:
        deliveries = self._transport.delivery_count(message)
        if deliveries is not None and deliveries > self._policy.max_attempts:
            # Earlier deliveries never finished (the process died, or dead-lettering failed):
            # retrying the handler again would only repeat that.
            await self._dead_letter(
                message,
                message_id,
                "redelivered",
                f"delivered {deliveries} times without being acked",
                deliveries,
            )
            return
        attempt = 1
        while True:
            try:
                await self.handler(event)
            except DownstreamError as failure:
                if not self._in_outage(failure):
                    if await self._failed(message, message_id, failure, attempt):
                        return
                    attempt += 1
                    continue
                # Not the message's fault: its dependency is down (its breaker is open, or
                # its bulkhead full). Wait, and try again, without spending an attempt: the
                # dead letters are for messages that cannot be processed, not for outages.
                await self._wait_for_dependency(message, failure)
                continue
            except Exception as error:
                if await self._failed(message, message_id, error, attempt):
                    return
                attempt += 1
            else:
                self._outage.recovered()
                return

    async def _failed(
        self,
        message: StreamMessage[Any],
        message_id: str,
        error: Exception,
        attempt: int,
    ) -> bool:
        """One attempt spent: back off for the next, or dead-letter after the last (True)."""
        trace.get_current_span().add_event(
            "handler failed",
            {"messaging.attempt": attempt, "exception.type": type(error).__qualname__},
        )
        if attempt >= self._policy.max_attempts:
            log.error(
                "handler failed on every attempt: dead-lettering the message",
                message_id=message_id,
                attempts=attempt,
                exc_info=error,
            )
            detail = f"{type(error).__qualname__}: {error}"
            await self._dead_letter(message, message_id, "exhausted", detail, attempt)
            return True
        delay = self._policy.delay(attempt)
        log.warning(
            "handler failed; retrying",
            message_id=message_id,
            attempt=attempt,
            retry_in=round(delay, 3),
            error_type=type(error).__qualname__,
        )
        await self._transport.keep_alive(message)
        await self._sleep(delay)
        return False

    def _in_outage(self, failure: DownstreamError) -> bool:
        """Refused by the breaker or the bulkhead, or failed as the breaker opened."""
        if isinstance(failure, DEPENDENCY_UNAVAILABLE):
            return True
        return failure.outcome in TRANSIENT and self._dependency_down(failure.downstream)

    async def _wait_for_dependency(
        self, message: StreamMessage[Any], unavailable: DownstreamError
    ) -> None:
        retry_after = unavailable.headers.get("Retry-After") if unavailable.headers else None
        wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
        wait = min(max(wait, MIN_DEPENDENCY_WAIT), MAX_DEPENDENCY_WAIT)
        self._outage.failed(
            downstream=unavailable.downstream, outcome=unavailable.outcome, retry_in=wait
        )
        trace.get_current_span().add_event(
            "dependency unavailable; waiting",
            {"downstream.name": unavailable.downstream, "outcome": unavailable.outcome},
        )
        self._metrics.dependency_waits.labels(self._source, unavailable.downstream).inc()
        # Tell the broker the message is still being worked on, so it is not redelivered.
        await self._transport.keep_alive(message)
        await self._sleep(wait)

    async def _dead_letter(
        self, message: StreamMessage[Any], message_id: str, reason: str, error: str, attempts: int
    ) -> None:
        headers = {
            key: value if isinstance(value, str) else str(value)
            for key, value in message.headers.items()
            if key.lower() not in _NOT_COPIED
        }
        headers.update(
            {
                REASON_HEADER: reason,
                ERROR_HEADER: error[:_MAX_ERROR_CHARS],
                ATTEMPTS_HEADER: str(attempts),
                SOURCE_HEADER: self._source,
                TIME_HEADER: datetime.now(UTC).isoformat(),
            }
        )
        try:
            await self._transport.publish(
                message.body, destination=self._dead_letters, message_id=message_id, headers=headers
            )
        except Exception as publish_error:
            log.error(
                "dead-letter publish failed: the message will be redelivered",
                message_id=message_id,
                error_type=type(publish_error).__qualname__,
            )
            raise DeadLetterFailed(f"could not dead-letter message {message_id}") from publish_error
        self._metrics.dead_letters.labels(self._source, reason).inc()
        trace.get_current_span().set_status(trace.StatusCode.ERROR, f"dead-lettered: {reason}")


def _validation_problems(error: ValidationError, limit: int = 5) -> list[str]:
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:limit]:
        location = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{location}: {item['msg']}")
    return problems
