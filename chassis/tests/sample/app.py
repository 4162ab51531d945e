from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from service_chassis import Service

from .settings import Settings


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    service = Service(settings or Settings(), tracer_provider=tracer_provider)
    service.install_package(f"{__package__}.example")
    return service.app
