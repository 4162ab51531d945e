"""The service: the chassis's mechanisms assembled into one FastAPI app, in one place.

``Service(settings)`` builds, in this order: the tracer provider, the metrics registry, the
health registry, discovery (Consul, when the settings say so), the database (when the settings
name one), the declared downstreams, the broker (when the settings name one), the outbox relay
(with both), and the app with its request observer, body limit, problem details, ``/health/*``
and ``/metrics``. The service adds its routes and handlers to ``service.app`` and returns it.
The lifespan starts the components in order and stops them in reverse, readiness failing
first, then flushes the spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import pkgutil
from collections.abc import AsyncIterator, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from fastapi import APIRouter, FastAPI, Request
from opentelemetry.sdk.trace import TracerProvider
from starlette.middleware import Middleware
from starlette.responses import Response

from .baggage_fields import BaggageSpanAttributes
from .downstreams import Downstream, Downstreams, ResolverFor
from .health import HealthRegistry
from .health import router as health_router
from .metrics import create_metrics, render, watch_event_loop_lag
from .observe import PROBE_METHODS, ObserveRequests
from .problems import install_problem_handlers
from .propagation import install_propagators
from .resilience.breaker import CircuitState
from .resilience.client import ResilientClient
from .route_order import move_last
from .settings import ServiceSettings
from .tracing import build_tracer_provider, fastapi_telemetry, service_tracer

if TYPE_CHECKING:
    from .database import Database, DatabaseSettings
    from .discovery import ConsulDiscovery
    from .messaging import Messaging
    from .messaging.settings import MessagingSettings

log = structlog.get_logger(__name__)

METRICS_PATH = "/metrics"
# Probes and scrapes are frequent and uninteresting: no spans, no metrics, no access log.
UNOBSERVED_PATHS = frozenset({METRICS_PATH, "/health/live", "/health/ready"})


class Component(Protocol):
    """Something with a life of its own: started in order, stopped in reverse order."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _not_observed(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNOBSERVED_PATHS and scope.get("method") in PROBE_METHODS


class Service:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        tracer_provider: TracerProvider | None = None,
        downstreams: Iterable[Downstream] = (),
        messaging_settings: MessagingSettings | None = None,
        database_settings: DatabaseSettings | None = None,
    ) -> None:
        self.settings = settings
        self.tracer_provider = tracer_provider or build_tracer_provider(settings)
        install_propagators()  # baggage and tracestate relayed as received
        if settings.baggage_keys:
            self.tracer_provider.add_span_processor(BaggageSpanAttributes(settings.baggage_keys))
        self.metrics = create_metrics(version=settings.service_version, owner=settings.owner)
        self.health = HealthRegistry(
            service_id=settings.service_name, release_id=settings.service_version
        )
        self.components: list[Component] = []
        self.discovery: ConsulDiscovery | None = None
        resolver_for = self._discovery()
        # Before messaging: stopped after it, so in-flight handlers still have their database.
        self.database: Database | None = self._database(database_settings)
        self.downstreams = Downstreams(
            tracer_provider=self.tracer_provider,
            metrics=self.metrics,
            resolver_for=resolver_for,
        )
        for downstream in downstreams:
            self.downstreams.declare(downstream)
        self.messaging: Messaging | None = self._messaging(messaging_settings)
        self._outbox()
        self.app = self._app()

    def _discovery(self) -> ResolverFor | None:
        if self.settings.service_discovery != "consul":
            return None
        from .discovery import install_consul

        self.discovery = install_consul(self.settings, self.health)
        self.components.append(self.discovery.registration)
        return self.discovery.resolver_for

    def _messaging(self, given: MessagingSettings | None) -> Messaging | None:
        if self.settings.messaging_broker == "none":
            return None
        from .messaging import build_messaging
        from .messaging.settings import MessagingSettings

        # Settings handed in (by a test) are used as they are; MESSAGING_ENABLED is for the
        # environment's settings.
        messaging_settings = given or MessagingSettings.for_service(self.settings.service_name)
        if given is None and not messaging_settings.enabled:
            log.warning("messaging is off (MESSAGING_ENABLED=false): no broker, no publishing")
            return None
        messaging = build_messaging(
            self.settings.messaging_broker,
            messaging_settings,
            service_name=self.settings.service_name,
            tracer_provider=self.tracer_provider,
            registry=self.metrics.registry,
            health=self.health,
            dependency_down=self._downstream_down,
        )
        self.components.append(messaging.component)
        return messaging

    def _database(self, given: DatabaseSettings | None) -> Database | None:
        if self.settings.database_system == "none":
            return None
        from .database import Database, DatabaseSettings

        database = Database(
            given or DatabaseSettings.from_environment(),
            service_name=self.settings.service_name,
            tracer_provider=self.tracer_provider,
            registry=self.metrics.registry,
            health=self.health,
        )
        self.components.append(database)
        return database

    def _outbox(self) -> None:
        """With a database and a broker: events published in a unit of work go through the
        outbox, its relay runs (started after the broker, stopped before it), and the
        consumer's inbox is the database's."""
        if self.database is None or self.messaging is None:
            return
        from .database.wiring import install_outbox

        self.components.append(install_outbox(self.database, self.messaging, self.metrics.registry))

    def _downstream_down(self, name: str) -> bool:
        client = self.downstreams.get(name)
        return client is not None and client.breaker.state is not CircuitState.CLOSED

    def _app(self) -> FastAPI:
        settings, metrics = self.settings, self.metrics
        app = FastAPI(
            title=settings.service_name,
            version=settings.service_version,
            lifespan=self._lifespan,
            telemetry=fastapi_telemetry(settings, self.tracer_provider, _not_observed),
            middleware=[
                Middleware(
                    ObserveRequests,
                    tracer=(
                        None
                        if settings.trace_operation_spans
                        else service_tracer(self.tracer_provider)
                    ),
                    duration=metrics.server_duration,
                    active=metrics.server_active,
                    unobserved_paths=UNOBSERVED_PATHS,
                    log_requests=settings.access_log,
                    max_body_bytes=settings.max_request_body_bytes,
                    connection_attributes=settings.trace_connection_attributes,
                ),
            ],
        )
        app.state.service = self
        app.state.health = self.health
        app.state.downstreams = self.downstreams
        app.state.messaging = self.messaging
        app.state.database = self.database
        if self.database is not None:
            from .database.tally import QueryTally

            # Innermost: the request observer's span is current when the tally is written.
            app.user_middleware.append(Middleware(QueryTally))
        install_problem_handlers(app)
        first_own_route = len(app.router.routes)

        @app.get(METRICS_PATH, include_in_schema=False)
        async def serve_metrics(request: Request) -> Response:
            body, content_type = render(metrics.registry, request.headers.get("accept"))
            return Response(body, media_type=content_type)

        app.include_router(health_router)
        self._own_routes = app.router.routes[first_own_route:]
        return app

    def _own_routes_last(self) -> None:
        """The chassis's routes after the service's (route_order.py), probes still answered."""
        kept_first = move_last(self.app.router, self._own_routes, UNOBSERVED_PATHS)
        if kept_first is not None:
            log.warning(
                "a route of the service would answer a probe: the chassis's routes stay first, "
                "and every request tests them before the service's",
                reason=kept_first,
            )

    def declare(self, downstream: Downstream) -> ResilientClient:
        """Declare a downstream (see downstreams.py) and return its resilient client."""
        return self.downstreams.declare(downstream)

    def include_router(self, router: APIRouter) -> None:
        self.app.include_router(router)

    def install_package(self, package: str) -> list[str]:
        """Call ``install(service)`` of every module in ``package`` that has one, in name
        order; a package that does not exist installs nothing. Returns the modules installed.

        This is how a baked service wires its example: deleting the package removes it whole.
        """
        if importlib.util.find_spec(package) is None:
            return []
        root = importlib.import_module(package)
        installed = []
        names = [package] + [
            f"{package}.{info.name}" for info in pkgutil.iter_modules(root.__path__)
        ]
        for name in names:
            install = getattr(importlib.import_module(name), "install", None)
            if callable(install):
                install(self)
                installed.append(name)
        return installed

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self._own_routes_last()
        lag_watch = asyncio.create_task(watch_event_loop_lag(self.metrics.event_loop_lag))
        started: list[Component] = []
        try:
            for component in self.components:
                await component.start()
                started.append(component)
            log.info("service started", components=[c.name for c in started])
            yield
        finally:
            # Readiness fails first, so traffic drains away while the rest shuts down.
            self.health.shutting_down = True
            for component in reversed(started):
                try:
                    await component.stop()
                except Exception:
                    log.exception("component failed to stop", component=component.name)
            lag_watch.cancel()
            await self.downstreams.aclose()
            self.tracer_provider.force_flush()
            log.info("service stopped")


def service_of(app: FastAPI) -> Service:
    """The ``Service`` that built ``app``."""
    service: Service = app.state.service
    return service
