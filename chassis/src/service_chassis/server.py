"""Run a service: JSON logs, tracing, uvicorn, and a graceful stop on SIGTERM.

``run(create_app, settings)`` is what a baked service's ``python -m <package>`` calls.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

import structlog
import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from .configuration import EX_CONFIG, ConfigurationError, from_validation
from .connections import ConnectionLimits, GuardedHttpToolsProtocol
from .health import HealthRegistry
from .log_stream import flush_logs
from .logs import configure_logging
from .settings import ServiceSettings
from .tracing import build_tracer_provider

log = structlog.get_logger(__name__)

AppFactory = Callable[..., FastAPI]


class DrainingServer(uvicorn.Server):
    """Fail readiness the moment a stop signal arrives, before uvicorn stops accepting.

    First SIGTERM or SIGINT: readiness fails at once; after ``SHUTDOWN_DELAY_SECONDS`` the
    listener closes and in-flight requests get ``SHUTDOWN_GRACE_SECONDS`` to finish; then the
    lifespan stops the components and flushes spans, and the process exits 0. A second
    signal exits at once, with 128 + the signal number.
    """

    def __init__(
        self, config: uvicorn.Config, health: HealthRegistry, *, shutdown_delay: float
    ) -> None:
        super().__init__(config)
        self._health = health
        self._shutdown_delay = shutdown_delay
        self._drain_at: float | None = None
        self._signal: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._health.shutting_down = True
        if self._drain_at is not None or self.should_exit:
            # A second signal: whoever sent it does not want to wait for in-flight work,
            # nor for a lifespan shutdown that may be what is stuck.
            with contextlib.suppress(Exception):
                log.warning("second stop signal: exiting without draining", signal=sig)
                flush_logs()
                sys.stderr.flush()
            os._exit(128 + sig)
        self._drain_at = time.monotonic() + self._shutdown_delay
        self._signal = sig

    async def on_tick(self, counter: int) -> bool:
        # uvicorn ticks every 0.1 s. Logging waits for the tick: a signal handler that writes
        # to stdout could interrupt another write.
        if self._signal is not None:
            log.info("stop signal: readiness fails, draining", signal=self._signal)
            self._signal = None
        if self._drain_at is not None and time.monotonic() >= self._drain_at:
            self.should_exit = True
        return await super().on_tick(counter)


def run(create_app: AppFactory, settings_class: Callable[[], ServiceSettings]) -> None:
    """Serve ``create_app(settings_class(), tracer_provider=...)`` until a stop signal.

    Settings it cannot start with end the process with one line per bad variable on stderr and
    exit status 78, before anything is served.
    """
    settings, provider, app = prepare(create_app, settings_class)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # logging is configured above: JSON, one line per record
        access_log=False,  # the service writes its own, with the route template
        timeout_graceful_shutdown=round(settings.shutdown_grace_seconds),
        timeout_keep_alive=settings.http_keep_alive_seconds,  # type: ignore[arg-type]
        http=GuardedHttpToolsProtocol.with_limits(
            ConnectionLimits(
                max_header_bytes=settings.http_max_header_bytes,
                header_timeout=settings.http_header_timeout_seconds,
                body_timeout=settings.http_body_timeout_seconds,
            )
        ),
        server_header=False,
    )
    health: HealthRegistry = app.state.health
    server = DrainingServer(config, health, shutdown_delay=settings.shutdown_delay_seconds)
    # Everything made so far lives as long as the process: move it out of the collector's
    # generations, so full collections stay short (p99 latency in the HTTP benchmark).
    gc.freeze()
    server.run()
    provider.shutdown()


def prepare(
    create_app: AppFactory, settings_class: Callable[[], ServiceSettings]
) -> tuple[ServiceSettings, TracerProvider, FastAPI]:
    """The settings, the logs, the tracer provider (also the global one) and the app, as
    ``run`` serves them; bad settings end the process as ``run`` says."""
    try:
        settings = settings_class()
    except ValidationError as error:
        settings_type = settings_class if isinstance(settings_class, type) else ServiceSettings
        _refuse(from_validation(error, settings_type))
    configure_logging(
        service=settings.service_name,
        level=settings.log_level,
        log_format=settings.log_format,
        baggage_keys=settings.baggage_keys,
    )
    try:
        provider: TracerProvider = build_tracer_provider(settings)
        # Global too, so code that calls trace.get_tracer() shares the service's provider.
        trace.set_tracer_provider(provider)
        app = create_app(settings, tracer_provider=provider)
    except ConfigurationError as error:
        _refuse(error)
    return settings, provider, app


def _refuse(error: ConfigurationError) -> NoReturn:
    print("The service cannot start with these settings:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)
    sys.exit(EX_CONFIG)
