"""Chosen baggage entries as span attributes and log fields (``BAGGAGE_ATTRIBUTES``).

Baggage travels with the request and the message, but a backend only sees what is on the
spans and in the logs. A service names the keys it wants (``tenant``, ``plan``): each span
started where that baggage is active gets them as attributes, under the same names (as
OpenTelemetry's contributed ``BaggageSpanProcessor`` does), and so does each log line. An
allow-list, because baggage comes from callers and must not flow into telemetry unchecked.
"""

from __future__ import annotations

from collections.abc import Collection

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor
from structlog.typing import EventDict, WrappedLogger


class BaggageSpanAttributes(SpanProcessor):
    """Copies the allowed baggage of a span's parent context onto the span when it starts."""

    def __init__(self, keys: Collection[str]) -> None:
        self._keys = tuple(keys)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        entries = baggage.get_all(parent_context)
        if not entries:
            return
        for key in self._keys:
            value = entries.get(key)
            if value is not None:
                span.set_attribute(key, str(value))


class BaggageLogFields:
    """structlog processor: the allowed baggage of the current context as fields of the line
    (a field the event already has is left as it is)."""

    def __init__(self, keys: Collection[str]) -> None:
        self._keys = tuple(keys)

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        entries = baggage.get_all()
        if entries:
            for key in self._keys:
                value = entries.get(key)
                if value is not None:
                    event_dict.setdefault(key, str(value))
        return event_dict
