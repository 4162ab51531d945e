"""The app factory: everything the service is made of, wired in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import TracerProvider
from starlette.middleware import Middleware
from starlette.responses import Response

from .api import downstream, items
from .body_limit import BodyLimit
from .context import ServiceContext
from .extensions import installed_extensions
from .health import HealthRegistry
from .health import router as health_router
from .metrics import create_metrics, render, watch_event_loop_lag
from .observe import PROBE_METHODS, ObserveRequests
from .problems import install_problem_handlers
from .settings import Settings
from .tracing import build_tracer_provider, fastapi_telemetry, service_tracer

log = structlog.get_logger(__name__)

METRICS_PATH = "/metrics"
# Probes and scrapes are frequent and uninteresting: no spans, no metrics, no access log.
UNOBSERVED_PATHS = frozenset({METRICS_PATH, "/health/live", "/health/ready"})


def _not_observed(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNOBSERVED_PATHS and scope.get("method") in PROBE_METHODS


def _outbound_clients(context: ServiceContext) -> None:
    # One line per downstream; see the README ("Resilience") to add another.
    if context.settings.downstream_url:
        context.downstreams.add(
            downstream.DOWNSTREAM, downstream.downstream_settings(context.settings)
        )


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    context: ServiceContext = app.state.context
    lag_watch = asyncio.create_task(watch_event_loop_lag(context.metrics.event_loop_lag))
    started = []
    try:
        for component in context.components:
            await component.start()
            started.append(component)
        log.info("service started", components=[c.name for c in started])
        yield
    finally:
        # Readiness fails first, so traffic drains away while the rest shuts down.
        context.health.shutting_down = True
        for component in reversed(started):
            try:
                await component.stop()
            except Exception:
                log.exception("component failed to stop", component=component.name)
        lag_watch.cancel()
        for client in context.clients.values():
            await client.aclose()
        context.tracer_provider.force_flush()
        log.info("service stopped")


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    settings = settings or Settings()
    provider = tracer_provider or build_tracer_provider(settings)
    metrics = create_metrics(version=settings.service_version, owner=settings.owner)
    context = ServiceContext(
        settings=settings,
        tracer_provider=provider,
        metrics=metrics,
        health=HealthRegistry(
            service_id=settings.service_name, release_id=settings.service_version
        ),
    )
    app = FastAPI(
        title=settings.service_name,
        version=settings.service_version,
        lifespan=_lifespan,
        telemetry=fastapi_telemetry(settings, provider, _not_observed),
        middleware=[
            Middleware(
                ObserveRequests,
                tracer=None if settings.trace_operation_spans else service_tracer(provider),
                duration=metrics.server_duration,
                active=metrics.server_active,
                unobserved_paths=UNOBSERVED_PATHS,
                log_requests=settings.access_log,
            ),
            Middleware(BodyLimit, max_body_bytes=settings.max_request_body_bytes),
        ],
    )
    app.state.context = context
    app.state.items = items.ItemStore()
    install_problem_handlers(app)
    _outbound_clients(context)

    @app.get(METRICS_PATH, include_in_schema=False)
    async def serve_metrics(request: Request) -> Response:
        body, content_type = render(metrics.registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    app.include_router(health_router)
    app.include_router(items.router)
    app.include_router(downstream.router)
    for install in installed_extensions():
        install(app, context)
    return app
