"""The app factory: the chassis wires the mechanisms, this file says what the service is.

``Service`` (service_chassis) builds tracing, metrics, JSON logs' context, problem details,
``/health/live``, ``/health/ready``, ``/metrics``, the body limit, the broker and discovery from
the settings. The service declares the downstreams it calls and adds its routes and handlers.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from service_chassis import Downstream, Service

from .settings import Settings

# The downstreams this service calls, each with one resilient client shared by routes and
# handlers; Downstream("payments") reads PAYMENTS_URL, PAYMENTS_TIMEOUT_SECONDS, ...
DOWNSTREAMS: tuple[Downstream, ...] = ()


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    service = Service(
        settings or Settings(), tracer_provider=tracer_provider, downstreams=DOWNSTREAMS
    )
    # Routes and handlers: include your routers here (service.include_router(...)).
    # The example (example/, tests/example/) installs itself while it exists: delete both.
    service.install_package(f"{__package__}.example")
    return service.app
