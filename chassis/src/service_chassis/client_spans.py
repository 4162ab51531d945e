"""Client spans that export an error's class, never its message or stack trace.

The httpx instrumentation opens its span with the API's defaults: an exception is recorded as
a span event with ``exception.message`` and ``exception.stacktrace``, and becomes the status
description. Both may carry URLs, hosts, tokens or payload fragments. Its tracer here opens
spans without either; the instrumentation sets ``error.type`` itself (stable HTTP convention)
and this marks the span's status as an error, without a description.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.trace import Span, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import Attributes


class QuietTracer(Tracer):
    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        return self._tracer.start_span(*args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Iterator[Span]:
        kwargs["record_exception"] = False
        kwargs["set_status_on_exception"] = False
        with self._tracer.start_as_current_span(*args, **kwargs) as span:
            try:
                yield span
            except BaseException as error:
                if span.is_recording():
                    attributes = getattr(span, "attributes", None) or {}
                    if "error.type" not in attributes:
                        span.set_attribute("error.type", type(error).__qualname__)
                    span.set_status(StatusCode.ERROR)
                raise


class QuietTracerProvider(TracerProvider):
    """Hands out ``QuietTracer``s over ``provider``'s tracers (same sampler, processors)."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | None = None,
    ) -> Tracer:
        return QuietTracer(
            self._provider.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        )
