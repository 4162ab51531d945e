"""The access-log line, written in one step.

An access-log line through structlog passes a bound logger, its level filter, seven
processors and the JSON renderer: about a fifth of what the service adds to a request. This
writes the same line (the same fields, in the same order, rendered by the same serializer)
directly, when the logs are JSON, and flushes the stream at most every 50 ms instead of after
every line. tests/test_access_log.py proves that, for arbitrary fields,
context variables, baggage and spans, the line is byte for byte what structlog writes, but
for the time in the timestamp. With console logs (a person at a terminal) structlog writes it.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol, TextIO

import structlog
from opentelemetry import baggage, trace
from structlog.contextvars import STRUCTLOG_KEY_PREFIX

_PREFIX_LENGTH = len(STRUCTLOG_KEY_PREFIX)
# The context variables structlog has made, one per key ever bound (structlog.contextvars).
_STRUCTLOG_VARS: dict[str, contextvars.ContextVar[Any]] = getattr(
    structlog.contextvars, "_CONTEXT_VARS", {"unknown": contextvars.ContextVar("unknown")}
)
_UTC = datetime.UTC
LOGGER_NAME = "access"
# The longest an access-log line waits in the stream's buffer.
FLUSH_AFTER = 0.05


class AccessLogger(Protocol):
    def info(self, event: str, **fields: Any) -> Any: ...


class DirectAccessLog:
    """What ``structlog.get_logger("access").info(event, **fields)`` writes, as
    logs.configure_logging sets structlog up for JSON."""

    def __init__(
        self,
        *,
        service: str,
        stream: TextIO,
        lock: threading.RLock,
        baggage_keys: Collection[str],
        dumps: Callable[[Any], str],
    ) -> None:
        self._service = service
        self._stream = stream
        self._lock = lock
        self._baggage_keys = tuple(baggage_keys)
        self._dumps = dumps
        self._second = -1
        self._flush_pending = False
        self._second_text = ""

    def _timestamp(self, now_ns: int | None = None) -> str:
        """``datetime.now(UTC).isoformat()`` with "Z" for "+00:00", as structlog writes it,
        formatting the date and time once a second."""
        now = time.time_ns() if now_ns is None else now_ns
        seconds, nanoseconds = divmod(now, 1_000_000_000)
        if seconds != self._second:
            moment = datetime.datetime.fromtimestamp(seconds, tz=_UTC)
            self._second_text = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = seconds
        microseconds = nanoseconds // 1000
        # isoformat leaves the fraction out when it is zero.
        return (
            f"{self._second_text}.{microseconds:06d}Z" if microseconds else f"{self._second_text}Z"
        )

    def info(self, event: str, **fields: Any) -> None:
        # The processors of logs.shared_processors, in their order.
        event_dict: dict[str, Any] = fields
        event_dict["event"] = event
        if _STRUCTLOG_VARS:  # merge_contextvars; until a first bind, there is nothing to merge
            for var, value in contextvars.copy_context().items():
                if var.name.startswith(STRUCTLOG_KEY_PREFIX) and value is not Ellipsis:
                    event_dict.setdefault(var.name[_PREFIX_LENGTH:], value)
        event_dict["level"] = "info"  # add_log_level
        event_dict["logger"] = LOGGER_NAME  # add_logger_name
        event_dict["timestamp"] = self._timestamp()  # TimeStamper(fmt="iso", utc=True)
        event_dict.setdefault("service", self._service)  # AddStatic
        span_context = trace.get_current_span().get_span_context()  # add_trace_context
        if span_context.is_valid:
            event_dict["trace_id"] = format(span_context.trace_id, "032x")
            event_dict["span_id"] = format(span_context.span_id, "016x")
        if self._baggage_keys:  # BaggageLogFields
            entries = baggage.get_all()
            if entries:
                for key in self._baggage_keys:
                    value = entries.get(key)
                    if value is not None:
                        event_dict.setdefault(key, str(value))
        line = self._dumps(event_dict) + "\n"
        with self._lock:
            self._stream.write(line)
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Flush within FLUSH_AFTER seconds, not after every line: a flush is a write system
        call, the costliest step of the line. Outside an event loop, flush at once."""
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_pending = True
        loop.call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        with self._lock:
            self._stream.flush()


_direct: tuple[object, DirectAccessLog] | None = None


def install_direct_access_log(factory: object, access_log: DirectAccessLog | None) -> None:
    """Called by logs.configure_logging: the direct writer for the logger factory it made
    (None when the logs are not JSON, or INFO is filtered out)."""
    global _direct
    _direct = None if access_log is None else (factory, access_log)


def access_logger() -> AccessLogger:
    """The direct writer while structlog is configured as configure_logging left it;
    otherwise structlog's own logger."""
    if _direct is not None and structlog.get_config()["logger_factory"] is _direct[0]:
        return _direct[1]
    logger: AccessLogger = structlog.get_logger(LOGGER_NAME).bind()
    return logger
