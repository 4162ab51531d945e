"""Per-request RED metrics and the access log, in one pure ASGI middleware.

Runs inside FastAPI's request span, so the histogram's exemplar and the log line carry that
span's trace id. Labels use the route template (``/items/{item_id}``), never the raw path, so
ids in URLs cannot explode the number of series.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import structlog
from prometheus_client import Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import current_exemplar

UNMATCHED_ROUTE = "unmatched"
# OpenTelemetry's rule: methods outside the known set share one label value.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)

access_log = structlog.get_logger("access")
error_log = structlog.get_logger(__name__)


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class ObserveRequests:
    def __init__(
        self,
        app: ASGIApp,
        *,
        duration: Histogram,
        active: Gauge,
        unobserved_paths: Collection[str],
        log_requests: bool,
    ) -> None:
        self.app = app
        self._duration = duration
        self._active = active
        self._unobserved = frozenset(unobserved_paths)
        self._log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._unobserved:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "_OTHER"
        status = 500
        active = self._active.labels(method)
        active.inc()
        started = time.perf_counter()

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception:
            error_log.exception(
                "unhandled exception", http_method=method, http_route=route_template(scope)
            )
            raise
        finally:
            elapsed = time.perf_counter() - started
            active.dec()
            route = route_template(scope)
            self._duration.labels(method, route, str(status)).observe(
                elapsed, exemplar=current_exemplar()
            )
            if self._log_requests:
                access_log.info(
                    "request",
                    http_method=method,
                    http_route=route,
                    url_path=scope["path"],
                    http_status=status,
                    duration_ms=round(elapsed * 1000, 3),
                )
