"""Asynchronous messaging: FastStream on NATS JetStream, RabbitMQ or Kafka, one model for all.

``Messaging`` is what a service gets when its settings name a broker: the transport (a
lifespan component with a readiness check, reconnecting by itself), the ``EventPublisher``
and, once the service subscribes a handler, the reliable consumer (validate, deduplicate,
retry, dead-letter, ack after success). Importing this package needs the broker's extra
(``service-chassis[nats]``, ``[rabbitmq]`` or ``[kafka]``).

In a route, take the publisher as a typed dependency::

    @router.post("/orders")
    async def place(order: NewOrder, publisher: Publisher) -> Accepted:
        await publisher.publish(Event.create(...))   # a 503 problem if the broker did not take it
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Protocol
from urllib.parse import urlsplit

from fastapi import Depends, Request
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from ..configuration import ConfigurationError
from ..health import HealthRegistry
from .component import BrokerComponent
from .consumer import EventHandler, ReliableConsumer
from .events import Event, NewEvent
from .idempotency import IdempotencyStore, InMemoryIdempotencyStore, TransactionalInbox
from .metrics import create_messaging_metrics
from .publisher import EventPublisher, EventsUnavailable
from .settings import MessagingSettings
from .transport import Telemetry, Transport

__all__ = [
    "Event",
    "EventHandler",
    "EventPublisher",
    "EventsUnavailable",
    "IdempotencyStore",
    "Messaging",
    "MessagingSettings",
    "NewEvent",
    "Publisher",
    "build_messaging",
]

BROKERS = ("nats", "rabbitmq", "kafka")


class _BrokerModule(Protocol):
    def build_transport(self, settings: MessagingSettings, telemetry: Telemetry) -> Transport: ...


@dataclass
class Messaging:
    settings: MessagingSettings
    transport: Transport
    publisher: EventPublisher
    component: BrokerComponent
    registry: CollectorRegistry
    # Whether a downstream is down (its breaker not closed): the consumer then waits for it.
    dependency_down: Callable[[str], bool] = field(default=lambda downstream: False)
    consumer: ReliableConsumer | None = field(default=None)
    # With a database: the persistent inbox, used unless subscribe is given a store.
    inbox: TransactionalInbox | None = field(default=None)

    def subscribe(
        self, handler: EventHandler, *, store: IdempotencyStore | None = None
    ) -> ReliableConsumer:
        """Consume the service's events destination with ``handler`` (one per service). With
        a database, each attempt runs in a transaction that records the event id in the
        inbox (``current_unit_of_work.get()`` is that transaction)."""
        if self.consumer is not None:
            raise RuntimeError("this service already subscribed a handler to its events")
        if store is None and self.inbox is not None:
            handler, store = self.inbox.wrap(handler), self.inbox
        self.consumer = ReliableConsumer(
            transport=self.transport,
            handler=handler,
            store=store or InMemoryIdempotencyStore(self.settings.idempotency_capacity),
            metrics=create_messaging_metrics(self.registry),
            settings=self.settings,
            dependency_down=self.dependency_down,
        )
        self.transport.subscribe(self.consumer)
        return self.consumer


def build_messaging(
    broker: str,
    settings: MessagingSettings,
    *,
    service_name: str,
    tracer_provider: TracerProvider,
    registry: CollectorRegistry,
    health: HealthRegistry,
    dependency_down: Callable[[str], bool] = lambda downstream: False,
) -> Messaging:
    """The broker's transport, publisher and lifecycle, reporting to the service's telemetry."""
    if broker not in BROKERS:
        raise ValueError(f"unknown broker {broker!r}: use one of {', '.join(BROKERS)}")
    check_broker_url(broker, settings.broker_url)
    module: _BrokerModule = importlib.import_module(f"{__name__}.{broker}")
    transport = module.build_transport(
        settings,
        Telemetry(tracer_provider=tracer_provider, registry=registry),
    )
    component = BrokerComponent(transport, settings, health)
    health.add(
        f"{transport.system}:connection", component.check, timeout=1.0, component_type="datastore"
    )
    return Messaging(
        settings=settings,
        transport=transport,
        publisher=EventPublisher(transport, settings, connected=lambda: component.started),
        component=component,
        registry=registry,
        dependency_down=dependency_down,
    )


# What BROKER_URL looks like for each broker: its schemes (none for Kafka) and an example.
URL_FORMS = {
    "nats": (("nats", "tls", "ws", "wss"), "nats://host:4222"),
    "rabbitmq": (("amqp", "amqps"), "amqp://user:password@host:5672/vhost"),
    "kafka": ((), "host:9092 or host1:9092,host2:9092"),
}


def check_broker_url(broker: str, url: str | None) -> None:
    """Refuse at start a BROKER_URL that cannot be the broker's, saying what it should be."""
    if not url:
        return
    schemes, example = URL_FORMS[broker]
    if schemes:
        parts = urlsplit(url)
        fits = parts.scheme.lower() in schemes and bool(parts.hostname)
    else:
        fits = all(_host_port(server) for server in url.split(","))
    if not fits:
        raise ConfigurationError([f"BROKER_URL={url!r}: not a {broker} address; use {example}"])


def _host_port(server: str) -> bool:
    host, _, port = server.strip().rpartition(":")
    return bool(host) and "/" not in host and port.isdigit()


async def event_publisher(request: Request) -> EventPublisher:
    """FastAPI dependency: the service's publisher, or a 503 problem when messaging is off."""
    messaging: Messaging | None = getattr(request.app.state, "messaging", None)
    if messaging is None:
        raise EventsUnavailable("Messaging is off in this instance (MESSAGING_ENABLED=false).")
    return messaging.publisher


Publisher = Annotated[EventPublisher, Depends(event_publisher)]
