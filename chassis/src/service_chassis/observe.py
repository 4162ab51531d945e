"""The request observer: server span, RED metrics and access log, in one pure ASGI layer.

One layer instead of three because each ASGI layer adds a coroutine and a ``send`` wrapper to
every request (the benchmark in benchmarks/bench_http.py measures the difference); for the same
reason the body limit (body_limit.py) is applied from here, with the body headers found in the
observer's one pass over the headers. The span follows OpenTelemetry's HTTP server
conventions; the metric and the log line are written while that span is current, so the
histogram's exemplar and the log carry its trace id. Labels use the route template
(``/items/{item_id}``), never the raw path, so ids in URLs cannot explode the number of series.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .access_log import access_logger
from .active_requests import ActiveRequests
from .body_limit import CONTENT_LENGTH, TRANSFER_ENCODING, BodyLimit
from .metrics import current_exemplar, observe, span_exemplar
from .problems import send_internal_error
from .resilience.deadline import DEADLINE_HEADER_KEY, current_deadline, enter_deadline

UNMATCHED_ROUTE = "unmatched"
# Probes and scrapes (GET, HEAD) on the unobserved paths go unrecorded; anything else there
# is an error worth a span, a metric and a trace id in its problem.
PROBE_METHODS = frozenset({"GET", "HEAD"})
# OpenTelemetry's rule: methods outside the known set share one value, "_OTHER".
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)


PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
_BODY_HEADERS = frozenset({CONTENT_LENGTH, TRANSFER_ENCODING})
_READ_HEADERS = PROPAGATION_HEADERS | _BODY_HEADERS | {DEADLINE_HEADER_KEY}


def read_headers(scope: Scope) -> tuple[dict[str, str], bytes | None, bool, bytes | None]:
    """In one pass: the W3C trace-context and baggage headers, X-Request-Timeout, whether
    the request has a body and its declared Content-Length (as body_limit.body_headers)."""
    found: dict[str, str] = {}
    timeout = declared = None
    has_body = False
    for name, value in scope["headers"]:
        if name in _READ_HEADERS:
            if name == DEADLINE_HEADER_KEY:
                if timeout is None:
                    timeout = value  # the first one counts
                continue
            if name in _BODY_HEADERS:
                has_body = True
                if name == CONTENT_LENGTH:
                    declared = value  # the last one counts, as in body_headers
                continue
            key = name.decode()
            text = value.decode("latin-1")
            # Repeated baggage headers are one list; the propagator reads a single value.
            found[key] = f"{found[key]},{text}" if key in found else text
    return found, timeout, has_body, declared


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _server_attributes(scope: Scope, method: str) -> dict[str, str | int]:
    # The required attributes of the HTTP server span convention; the recommended connection
    # ones cost time on every request and come with TRACE_CONNECTION_ATTRIBUTES.
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    if method == "_OTHER":
        attributes["http.request.method_original"] = scope["method"]
    query = scope.get("query_string")
    if query:
        # Required by the stable HTTP convention whenever the request has a query.
        attributes["url.query"] = query.decode("latin-1")
    return attributes


def connection_attributes(scope: Scope) -> dict[str, str | int]:
    """The server span's recommended connection attributes (stable HTTP convention): the
    address the client asked for (the Host header, else the listening socket), the client's
    address, the HTTP version and the user agent."""
    attributes: dict[str, str | int] = {}
    host = user_agent = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
    server = scope.get("server") or (None, None)
    if host:
        address, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not address or not port.isdigit():
            address, port = host, ""
        attributes["server.address"] = address.strip("[]")
        if port.isdigit():
            attributes["server.port"] = int(port)
        elif server[1] is not None:
            attributes["server.port"] = server[1]
    elif server[0] is not None:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    if "http_version" in scope:
        attributes["network.protocol.version"] = scope["http_version"]
    if user_agent is not None:
        attributes["user_agent.original"] = user_agent
    return attributes


class ObserveRequests:
    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: trace.Tracer | None,
        duration: Histogram,
        active: ActiveRequests,
        unobserved_paths: Collection[str],
        log_requests: bool,
        max_body_bytes: int,
        connection_attributes: bool = False,
    ) -> None:
        """``tracer`` None leaves the server span to FastAPI's own telemetry; requests run
        ``app`` within the body limit of ``max_body_bytes``."""
        self.app = app
        self._body_limit = BodyLimit(app, max_body_bytes=max_body_bytes)
        self._tracer = tracer
        self._duration = duration
        self._active = active.by_method
        self._unobserved = frozenset(unobserved_paths)
        self._log_requests = log_requests
        self._connection_attributes = connection_attributes
        # Bound now, not looked up per request: logging is configured before the app is made.
        self._access_log = access_logger()
        self._error_log = structlog.get_logger(__name__).bind()
        # Label lookups validate and lock; the few label combinations are cached here instead.
        self._duration_by_labels: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self._unobserved and scope["method"] in PROBE_METHODS:
            await self._body_limit(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "_OTHER"
        status = 500
        error_type = ""
        active = self._active
        active[method] = active.get(method, 0) + 1  # read at scrape time (active_requests.py)
        span: trace.Span | None = None
        token = None
        carrier, timeout, has_body, declared_length = read_headers(scope)
        if self._tracer is not None:
            parent = propagate.extract(carrier) if carrier else otel_context.Context()
            attributes = _server_attributes(scope, method)
            if self._connection_attributes:
                attributes.update(connection_attributes(scope))
            span = self._tracer.start_span(method, parent, SpanKind.SERVER, attributes)
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        started = time.perf_counter()

        response_started = False
        span_open = span is not None

        async def send_and_note_status(message: Message) -> None:
            nonlocal status, response_started, span_open
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)
            last_body = message["type"] == "http.response.body" and not message.get("more_body")
            if span is not None and span_open and last_body:
                # The response is out: the span ends now, not after the bookkeeping below, so
                # it never outlasts the caller's span that waits for this response.
                span_open = False
                _finish(span, method, route_template(scope), status, "")

        deadline = None if timeout is None else enter_deadline(timeout)  # X-Request-Timeout
        try:
            app = self._body_limit.app_for(has_body, declared_length)
            await app(scope, receive, send_and_note_status)
        except Exception as error:
            # Answered here, while the request's span is still current, so the log line and
            # the problem carry its trace id. Starlette's outer error middleware would run
            # after the span has ended.
            error_type = type(error).__qualname__
            self._error_log.exception(
                "unhandled exception", http_method=method, http_route=route_template(scope)
            )
            if response_started:
                raise  # too late for a problem: let the server close the connection
            status = 500
            await send_internal_error(scope, send)
        finally:
            elapsed = time.perf_counter() - started
            active[method] -= 1
            route = route_template(scope)
            exemplar = (
                current_exemplar() if span is None else span_exemplar(span.get_span_context())
            )
            observe(self._histogram(method, route, status), elapsed, exemplar)
            if self._log_requests:
                self._access_log.info(
                    "request",
                    http_method=method,
                    http_route=route,
                    url_path=scope["path"],
                    http_status=status,
                    duration_ms=round(elapsed * 1000, 3),
                )
            if span is not None and span_open:
                _finish(span, method, route, status, error_type)
            if token is not None:
                otel_context.detach(token)
            if deadline is not None:
                current_deadline.reset(deadline)

    def _histogram(self, method: str, route: str, status: int) -> Histogram:
        key = (method, route, status)
        histogram = self._duration_by_labels.get(key)
        if histogram is None:
            histogram = self._duration.labels(method, route, str(status))
            self._duration_by_labels[key] = histogram
        return histogram


def _finish(span: trace.Span, method: str, route: str, status: int, error_type: str) -> None:
    attributes: dict[str, str | int] = {"http.response.status_code": status}
    if route != UNMATCHED_ROUTE:
        attributes["http.route"] = route
        span.update_name(f"{method if method != '_OTHER' else 'HTTP'} {route}")
    if error_type or status >= 500:
        # The exception's type only: its message may carry data that must not be exported.
        attributes["error.type"] = error_type or str(status)
        span.set_status(StatusCode.ERROR)
    span.set_attributes(attributes)
    span.end()
