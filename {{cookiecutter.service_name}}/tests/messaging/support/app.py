"""The service with messaging, run in process against a test's broker and handler."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.__package_name }}.app import create_app
from {{ cookiecutter.__package_name }}.messaging import Messaging, install_messaging
from {{ cookiecutter.__package_name }}.messaging.consumer import EventHandler
from {{ cookiecutter.__package_name }}.messaging.settings import MessagingSettings
from {{ cookiecutter.__package_name }}.settings import Settings

from ...conftest import serve


@dataclass
class RunningService:
    app: FastAPI
    client: httpx.AsyncClient
    messaging: Messaging


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings,
    messaging_settings: MessagingSettings,
    *,
    tracer_provider: TracerProvider,
    handler: EventHandler | None = None,
) -> AsyncIterator[RunningService]:
    app = create_app(settings, tracer_provider=tracer_provider)
    messaging = install_messaging(app, app.state.context, messaging_settings, handler=handler)
    async with serve(app) as client:
        yield RunningService(app, client, messaging)


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


def messaging_env(settings: MessagingSettings) -> dict[str, str]:
    """``settings`` as the environment variables a service process reads."""
    env = {"MESSAGING_ENABLED": "true"}
    for name, field in MessagingSettings.model_fields.items():
        value = getattr(settings, name)
        if name != "enabled" and value is not None and isinstance(field.validation_alias, str):
            env[field.validation_alias] = str(value)
    return env
