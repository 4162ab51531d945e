"""The sample service with messaging, run in process against a test's broker and handler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from service_chassis import Service
from service_chassis.messaging import Messaging
from service_chassis.messaging.consumer import EventHandler
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.testing.servers import serve
from tests.sample.example import downstream, events, items
from tests.sample.settings import Settings


@dataclass
class RunningService:
    app: FastAPI
    service: Service
    client: httpx.AsyncClient
    messaging: Messaging


def build_service(
    settings: Settings,
    messaging_settings: MessagingSettings,
    *,
    tracer_provider: TracerProvider,
    handler: EventHandler | None = None,
) -> Service:
    """The sample service on ``settings.messaging_broker``, consuming with ``handler`` (the
    example handler when None)."""
    service = Service(
        settings, tracer_provider=tracer_provider, messaging_settings=messaging_settings
    )
    items.install(service)
    downstream.install(service)
    service.include_router(events.router)
    assert service.messaging is not None
    service.messaging.subscribe(
        handler or events.ExampleHandler(service.declare(downstream.DOWNSTREAM))
    )
    return service


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings,
    messaging_settings: MessagingSettings,
    *,
    tracer_provider: TracerProvider,
    handler: EventHandler | None = None,
) -> AsyncIterator[RunningService]:
    service = build_service(
        settings, messaging_settings, tracer_provider=tracer_provider, handler=handler
    )
    assert service.messaging is not None
    async with serve(service.app) as client:
        yield RunningService(service.app, service, client, service.messaging)
