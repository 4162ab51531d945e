"""What the rest of the service needs from a broker, whichever one the bake chose.

Each broker module (``nats.py``, ``rabbitmq.py``, ``kafka.py``) builds a FastStream broker and
wraps it in a ``Transport``: durable destinations, a subscriber that acks only after the
consumer returns, confirmed publishes. Everything else (retries, dead letters, idempotency,
the example endpoint) is written once against this protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faststream.message import StreamMessage
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from ..outages import OutageLog
from .telemetry import MessagingTelemetry

# The id a consumer deduplicates on. FastStream reads this header as the message id on NATS;
# RabbitMQ carries the id in the AMQP ``message_id`` property instead.
MESSAGE_ID_HEADER = "message_id"

Consume = Callable[[StreamMessage[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Telemetry:
    """Where the transport's spans and metrics go."""

    tracer_provider: TracerProvider
    registry: CollectorRegistry

    def for_transport(
        self, system: str, *, consumer_group: str | None = None, subscription: str | None = None
    ) -> MessagingTelemetry:
        return MessagingTelemetry(
            system=system,
            tracer_provider=self.tracer_provider,
            registry=self.registry,
            consumer_group=consumer_group,
            subscription=subscription,
        )


class Transport(Protocol):
    system: str  # "nats", "rabbitmq" or "kafka": the check name and log field
    url: str

    def subscribe(self, consume: Consume) -> None:
        """Consume the events destination with ``consume``; ack after it returns."""
        ...

    async def start(self) -> None:
        """Connect, declare the destinations, start consuming. Safe to call again on failure."""
        ...

    async def stop_consuming(self) -> None:
        """Take no new messages; return once in-flight handlers finished (bounded by the
        drain time) and their acks were sent. Publishing still works."""
        ...

    async def stop(self) -> None:
        """Stop consuming as above, then disconnect."""
        ...

    async def is_connected(self) -> bool: ...

    async def publish(
        self, body: bytes, *, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None:
        """Publish and return once the broker has taken responsibility for the message."""
        ...

    async def delete_destinations(self) -> None:
        """Delete what ``start`` declared, messages included: for benchmarks and teardown."""
        ...

    def message_id(self, message: StreamMessage[Any]) -> str: ...

    def delivery_count(self, message: StreamMessage[Any]) -> int | None:
        """How often the broker has delivered this message, when it counts (else None)."""
        ...

    async def keep_alive(self, message: StreamMessage[Any]) -> None:
        """Tell the broker the message is still being worked on (before a retry's wait)."""
        ...


class _Subscriber(Protocol):
    async def stop(self) -> None: ...


class _Broker(Protocol):
    @property
    def subscribers(self) -> Sequence[_Subscriber]: ...

    async def stop(self) -> None: ...

    async def ping(self, timeout: float | None) -> bool: ...  # noqa: ASYNC109 - FastStream's


class BrokerLifecycle:
    """What every transport shares: the traced publish, stopping, the connection check."""

    broker: _Broker
    telemetry: MessagingTelemetry | None = None

    async def publish(
        self, body: bytes, *, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None:
        carrier = dict(headers)
        if self.telemetry is None:
            await self._send(body, destination, message_id, carrier)
            return
        with self.telemetry.sending(destination, message_id, carrier):
            await self._send(body, destination, message_id, carrier)

    async def _send(
        self, body: bytes, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None:
        """Publish with the broker's client; return once the broker took the message."""
        raise NotImplementedError

    async def stop_consuming(self) -> None:
        # A stopped FastStream subscriber fetches nothing more, waits for the handlers it
        # started (up to the broker's graceful_timeout, the drain time), and leaves every
        # message it did not start unacked, for redelivery.
        await asyncio.gather(*(subscriber.stop() for subscriber in self.broker.subscribers))

    async def stop(self) -> None:
        await self.stop_consuming()
        await self.broker.stop()

    async def is_connected(self) -> bool:
        return await self.broker.ping(timeout=0.5)


async def whole_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    """Decoder that hands the handler the message itself, its body untouched.

    FastStream's default decoder parses JSON before the handler runs: a malformed body would
    fail outside the consumer's control and be redelivered for ever. With the message as the
    decoded value the broker needs no dependency injection either (``apply_types=False``),
    which would resolve ``Context("message")`` in a worker thread for every message.
    """
    return message


def subscriber_function(
    consume: Consume,
    *,
    telemetry: MessagingTelemetry | None = None,
    destination: str = "",
    message_id: Callable[[StreamMessage[Any]], str] = lambda message: message.message_id,
) -> Callable[[StreamMessage[Any]], Awaitable[None]]:
    """A plain function for FastStream to subscribe (it names handlers after functions),
    each delivery processed inside its process span when there is telemetry."""
    if telemetry is None:

        async def consume_message(message: StreamMessage[Any]) -> None:
            await consume(message)

        return consume_message

    async def consume_traced_message(message: StreamMessage[Any]) -> None:
        with telemetry.processing(destination, message_id(message), message.headers):
            await consume(message)

    return consume_traced_message


def header(message: StreamMessage[Any], name: str) -> str | None:
    value = message.headers.get(name)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


class _SupervisorNoise(logging.Filter):
    """FastStream logs "callback for Task-N is being executed..." at INFO whenever a consumer
    task ends, which is every shutdown: not worth a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO and record.getMessage().startswith("callback for")
        )


class RoutineFaults(logging.Filter):
    """While the broker is away, FastStream logs a traceback when the connection breaks and an
    ERROR with a traceback ("Task-N raised an exception, retrying...") each time a consumer
    task fails: handled, expected faults. Those records go to the outage log instead, which
    says once that the connection failed, summarises while it lasts, and says when it works
    again."""

    ROUTINE = ("raised an exception, retrying", "Connection broken with")

    def __init__(self, outage: OutageLog, routine: tuple[str, ...] = ROUTINE) -> None:
        super().__init__()
        self.outage = outage
        self.routine = routine

    def filter(self, record: logging.LogRecord) -> bool:
        if not any(routine in record.getMessage() for routine in self.routine):
            return True
        error = record.exc_info[1] if record.exc_info else None
        self.outage.failed(error=type(error).__qualname__ if error else "unknown")
        return False


def broker_logger(system: str) -> logging.Logger:
    """The logger FastStream writes to, under the service's name so that it reaches the root
    JSON handler ("faststream.*" would stop at FastStream's own stderr handler)."""
    logger = logging.getLogger(f"{__package__}.{system}")
    if not any(isinstance(f, _SupervisorNoise) for f in logger.filters):
        logger.addFilter(_SupervisorNoise())
    if not any(isinstance(f, RoutineFaults) for f in logger.filters):
        logger.addFilter(RoutineFaults(OutageLog(f"{system} broker connection")))
    return logger


def route_client_faults(system: str, routine: Mapping[str, tuple[str, ...]]) -> None:
    """Send a broker client library's own lines about a lost connection (one per reconnect
    attempt, some with tracebacks) to ``system``'s outage log too: ``routine`` maps each
    logger to the beginnings of the messages that are routine while the broker is away."""
    outage = broker_outage(system)
    for name, messages in routine.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, RoutineFaults) for f in logger.filters):
            logger.addFilter(RoutineFaults(outage, messages))


def broker_outage(system: str) -> OutageLog:
    """The outage log of ``system``'s connection (shared with its logger's filter)."""
    for found in broker_logger(system).filters:
        if isinstance(found, RoutineFaults):
            return found.outage
    raise LookupError(system)
