"""``python -m`` entry point: configure logging and tracing, then serve with uvicorn."""

from __future__ import annotations

from types import FrameType

import uvicorn
from opentelemetry import trace

from .app import create_app
from .context import ServiceContext
from .logs import configure_logging
from .settings import Settings
from .tracing import build_tracer_provider


class DrainingServer(uvicorn.Server):
    """Fail readiness the moment a stop signal arrives, before uvicorn stops accepting."""

    def __init__(self, config: uvicorn.Config, context: ServiceContext) -> None:
        super().__init__(config)
        self._context = context

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._context.health.shutting_down = True
        if self.should_exit:  # a second signal: stop waiting for in-flight work
            self.force_exit = True
        super().handle_exit(sig, frame)
        # A graceful stop is a normal end: exit 0 rather than re-raise the signal.
        self._captured_signals.clear()


def main() -> None:
    settings = Settings()
    configure_logging(service=settings.service_name, level=settings.log_level)
    provider = build_tracer_provider(settings)
    # Global too, so code that calls trace.get_tracer() shares the service's provider.
    trace.set_tracer_provider(provider)
    app = create_app(settings, tracer_provider=provider)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # logging is configured above: JSON, one line per record
        access_log=False,  # the service writes its own, with the route template
        timeout_graceful_shutdown=round(settings.shutdown_grace_seconds),
        server_header=False,
    )
    server = DrainingServer(config, app.state.context)
    server.run()
    provider.shutdown()


if __name__ == "__main__":
    main()
