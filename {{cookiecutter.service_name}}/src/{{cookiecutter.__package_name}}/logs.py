"""JSON logs on stdout, one object per line, for structlog and the standard library alike.

structlog's own loggers and every ``logging`` record (uvicorn, httpx, the broker client) pass
through the same processors, so all of them carry the service name and, inside a span, the
trace and span ids.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

# uvicorn's own access log is replaced by the service's, which knows the route template.
_SILENCED = ("uvicorn.access",)
_PROPAGATED = ("uvicorn", "uvicorn.error")


class DropReraisedErrors(logging.Filter):
    """Drop uvicorn's copy of an exception the service has already logged and answered.

    The request observer logs it once, inside the request's span (so with its trace id), and
    the problem handler answers 500; uvicorn then sees it re-raised and would log it again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Exception in ASGI application")


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add ``trace_id`` and ``span_id`` of the active span, in W3C hex form."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


class AddStatic:
    """Add fixed fields (the service name) to every event."""

    def __init__(self, **fields: str) -> None:
        self._fields = fields

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        for key, value in self._fields.items():
            event_dict.setdefault(key, value)
        return event_dict


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def shared_processors(service: str) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        AddStatic(service=service),
        add_trace_context,
    ]


def configure_logging(*, service: str, level: str, stream: Any = None) -> None:
    """Route structlog and the standard library through one JSON formatter."""
    shared = shared_processors(service)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _PROPAGATED:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropReraisedErrors) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(DropReraisedErrors())
    for name in _SILENCED:
        logging.getLogger(name).disabled = True
