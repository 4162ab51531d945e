"""Logs on stdout for structlog and the standard library alike: JSON, one object per line (the
contract, for containers and log pipelines), or, for a person at a terminal, structlog's
console rendering with readable tracebacks (``LOG_FORMAT=console``; the default when stdout is
a terminal).

Both kinds of record pass through the same processors, so every line carries the service name
and, inside a span, the trace and span ids. structlog's own loggers take a direct path (no
``logging.LogRecord`` per event: the access log is written on every request, and the stdlib
round trip costs several times more than the rendering); records from ``logging`` (uvicorn,
httpx, the broker client) go through a ``ProcessorFormatter`` with the same processors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import Any, Literal, TextIO

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from .access_log import DirectAccessLog, install_direct_access_log
from .baggage_fields import BaggageLogFields
from .log_stream import log_stream

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


class LineWriter:
    """The logger structlog renders into: writes each event as one line and flushes it.

    It shares a lock with the stdlib handler on the same stream, so lines never interleave.
    """

    def __init__(self, name: str, stream: TextIO, lock: threading.RLock) -> None:
        self.name = name  # read by structlog.stdlib.add_logger_name
        self._stream = stream
        self._lock = lock

    def msg(self, message: str) -> None:
        with self._lock:
            self._stream.write(message + "\n")
            self._stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg


class LineWriterFactory:
    def __init__(self, stream: TextIO, lock: threading.RLock) -> None:
        self._stream = stream
        self._lock = lock

    def __call__(self, *args: Any) -> LineWriter:
        name = str(args[0]) if args else "root"
        return LineWriter(name, self._stream, self._lock)


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def shared_processors(service: str, baggage_keys: Collection[str] = ()) -> list[Processor]:
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        AddStatic(service=service),
        add_trace_context,
    ]
    if baggage_keys:
        processors.append(BaggageLogFields(baggage_keys))
    return processors


LogFormat = Literal["json", "console", "auto"]


def resolve_format(log_format: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    """``auto``: console for a terminal, JSON otherwise (a container's stdout is no terminal)."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if callable(isatty) and isatty() else "json"


def configure_logging(
    *,
    service: str,
    level: str,
    stream: TextIO | None = None,
    log_format: LogFormat = "json",
    baggage_keys: Collection[str] = (),
) -> None:
    """Route structlog and the standard library into one stream, JSON lines or console;
    ``baggage_keys`` are the baggage entries every line carries (BAGGAGE_ATTRIBUTES)."""
    output = log_stream(stream)
    shared = shared_processors(service, baggage_keys)
    renderer: Processor
    if resolve_format(log_format, output) == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    # The console renderer lays tracebacks out itself; JSON carries them as one string.
    exceptions: list[Processor] = (
        []
        if isinstance(renderer, structlog.dev.ConsoleRenderer)
        else [structlog.processors.format_exc_info]
    )

    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *exceptions,
                renderer,
            ],
        )
    )
    assert handler.lock is not None  # created by logging.Handler.__init__
    factory = LineWriterFactory(output, handler.lock)
    structlog.configure(
        processors=[*shared, *exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # The access log's line in one step, when it is JSON and INFO is written (access_log.py).
    direct = isinstance(renderer, structlog.processors.JSONRenderer)
    install_direct_access_log(
        factory,
        DirectAccessLog(
            service=service,
            stream=output,
            lock=handler.lock,
            baggage_keys=baggage_keys,
            dumps=_dumps,
        )
        if direct and logging.getLevelName(level) <= logging.INFO
        else None,
    )

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _PROPAGATED:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in _SILENCED:
        logging.getLogger(name).disabled = True
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropReraisedErrors) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(DropReraisedErrors())
