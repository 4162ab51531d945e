"""The sample service with messaging, run in process against a test's broker and handler."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from service_chassis import Service
from service_chassis.messaging import Messaging
from service_chassis.messaging.consumer import EventHandler
from service_chassis.messaging.settings import MessagingSettings
from tests.sample.example import downstream, events, items
from tests.sample.settings import Settings

from ...conftest import serve


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


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 10.0, what: str = ""
) -> None:
    """Wait until ``condition`` holds; fail with ``what`` when it does not in time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within} s: {what or condition}")


def messaging_env(settings: MessagingSettings, broker: str) -> dict[str, str]:
    """``settings`` as the environment variables a service process reads."""
    env = {"MESSAGING_ENABLED": "true", "MESSAGING_BROKER": broker}
    for name, field in MessagingSettings.model_fields.items():
        value = getattr(settings, name)
        if name != "enabled" and value is not None and isinstance(field.validation_alias, str):
            env[field.validation_alias] = str(value)
    return env
