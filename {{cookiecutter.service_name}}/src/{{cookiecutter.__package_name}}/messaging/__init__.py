"""Asynchronous messaging: FastStream on the broker this service was baked with.

``install`` (found by ``extensions.py``) wires it into the app: the broker as a lifespan
component and a readiness check, FastStream's OpenTelemetry and Prometheus middlewares on the
service's tracer provider and registry, the reliable consumer with the example handler, and
``POST /events``.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from fastapi import FastAPI

from ..api.downstream import DOWNSTREAM
from ..context import ServiceContext
from . import {{ cookiecutter.messaging }} as broker
from .api import router
from .component import BrokerComponent
from .consumer import EventHandler, ReliableConsumer
from .handlers import ExampleHandler
from .idempotency import IdempotencyStore, InMemoryIdempotencyStore
from .metrics import create_messaging_metrics
from .publisher import EventPublisher
from .settings import MessagingSettings
from .transport import Telemetry, Transport

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Messaging:
    settings: MessagingSettings
    transport: Transport
    publisher: EventPublisher
    consumer: ReliableConsumer
    component: BrokerComponent


def install(app: FastAPI, context: ServiceContext) -> None:
    settings = MessagingSettings()
    if not settings.enabled:
        log.warning("messaging is off (MESSAGING_ENABLED=false): no broker, no POST /events")
        return
    install_messaging(app, context, settings)


def install_messaging(
    app: FastAPI,
    context: ServiceContext,
    settings: MessagingSettings,
    *,
    handler: EventHandler | None = None,
    store: IdempotencyStore | None = None,
) -> Messaging:
    """Wire messaging into ``app``; tests call this with their own settings and handler."""
    transport = broker.build_transport(
        settings,
        Telemetry(
            tracer_provider=context.tracer_provider,
            registry=context.metrics.registry,
            app_name=context.settings.service_name,
        ),
    )
    consumer = ReliableConsumer(
        transport=transport,
        handler=handler or ExampleHandler(context.downstreams.get(DOWNSTREAM)),
        store=store or InMemoryIdempotencyStore(settings.idempotency_capacity),
        metrics=create_messaging_metrics(context.metrics.registry),
        settings=settings,
    )
    transport.subscribe(consumer)
    component = BrokerComponent(transport, settings, context.health)
    context.components.append(component)
    context.health.add(
        f"{transport.system}:connection", component.check, timeout=1.0, component_type="datastore"
    )
    messaging = Messaging(
        settings=settings,
        transport=transport,
        publisher=EventPublisher(transport, settings),
        consumer=consumer,
        component=component,
    )
    app.state.messaging = messaging
    app.include_router(router)
    return messaging
