"""Client spans and operation metrics for every statement, on the stable database conventions
(OpenTelemetry semantic conventions 1.33+: ``db.system.name``, ``db.namespace``,
``db.operation.name``, ``db.query.summary``, ``db.query.text``, ``server.address``), from
SQLAlchemy's cursor events.

Why not opentelemetry-instrumentation-sqlalchemy: its 0.66b2 release still emits the older
experimental attributes (``db.system``, ``db.statement``, ``db.name``) unless
``OTEL_SEMCONV_STABILITY_OPT_IN`` says otherwise, and has no query summary.

SQLAlchemy runs asyncpg calls in a greenlet that shares the awaiting task's context, so the
span started in ``before_cursor_execute`` is a child of whatever span is current in the
request or handler. Each statement is also added to the current request's tally (its count
and time appear on the server span, see ``tally.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import event
from sqlalchemy.engine import Connection, ExceptionContext, ExecutionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from .summary import describe
from .tally import current_tally
from .url import DatabaseURL

SYSTEM = "postgresql"
# The buckets the conventions advise for db.client.operation.duration.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_SPAN = "_chassis_span"
_STARTED = "_chassis_started"
_LABELS = (
    "db_system_name",
    "db_namespace",
    "db_operation_name",
    "db_collection_name",
    "error_type",
)


def operation_duration(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "db_client_operation_duration_seconds",
        "Duration of database client operations (db.client.operation.duration).",
        _LABELS,
        buckets=DURATION_BUCKETS,
        registry=registry,
    )


_untraced: ContextVar[bool] = ContextVar("untraced_statements", default=False)


@contextmanager
def untraced() -> Iterator[None]:
    """Statements in this block get no span (still measured): readiness probes and the outbox
    relay's polling, which would otherwise add a root trace every second."""
    token = _untraced.set(True)
    try:
        yield
    finally:
        _untraced.reset(token)


class StatementTelemetry:
    """Attached to an engine with ``instrument``: one span and one observation per statement."""

    def __init__(self, url: DatabaseURL, tracer: Tracer, duration: Histogram) -> None:
        self._tracer = tracer
        self._duration = duration
        # The schema would need a query (search_path): the namespace is the database.
        self._namespace = url.database
        self._server = {"server.address": url.host, "server.port": url.port}

    def instrument(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "handle_error", self._error)

    def _before(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        if context is None:
            return
        described = describe(statement)
        attributes: dict[str, Any] = {
            "db.system.name": SYSTEM,
            "db.namespace": self._namespace,
            "db.query.summary": described.summary,
            "db.query.text": described.text,
            **self._server,
        }
        if described.operation:
            attributes["db.operation.name"] = described.operation
        if described.collection:
            attributes["db.collection.name"] = described.collection
        if executemany and isinstance(parameters, list | tuple) and len(parameters) > 1:
            attributes["db.operation.batch.size"] = len(parameters)
        span = (
            trace.INVALID_SPAN
            if _untraced.get()
            else self._tracer.start_span(
                described.summary, kind=SpanKind.CLIENT, attributes=attributes
            )
        )
        setattr(context, _SPAN, (span, described))
        setattr(context, _STARTED, time.perf_counter())

    def _after(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        self._finish(context, "")

    def _error(self, exception_context: ExceptionContext) -> None:
        context = exception_context.execution_context
        error = exception_context.original_exception
        code = _sqlstate(error)
        span_entry = getattr(context, _SPAN, None) if context is not None else None
        if span_entry is not None:
            span: trace.Span = span_entry[0]
            if code:
                span.set_attribute("db.response.status_code", code)
            span.set_status(StatusCode.ERROR, type(error).__name__)
        self._finish(context, code or type(error).__qualname__)

    def _finish(self, context: ExecutionContext | None, error_type: str) -> None:
        entry = getattr(context, _SPAN, None) if context is not None else None
        if entry is None:
            return
        setattr(context, _SPAN, None)
        span, described = entry
        elapsed = time.perf_counter() - getattr(context, _STARTED)
        if error_type:
            span.set_attribute("error.type", error_type)
        span.end()
        self._duration.labels(
            SYSTEM, self._namespace, described.operation, described.collection, error_type
        ).observe(elapsed)
        tally = current_tally.get()
        if tally is not None:
            tally.add(elapsed)


def _sqlstate(error: BaseException) -> str:
    """PostgreSQL's error code (SQLSTATE), from the driver's error or what it wraps."""
    for candidate in (error, getattr(error, "orig", None), error.__cause__):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return ""
