"""The chassis's own spans (HTTP server, messaging send and process), recorded as plain
fields and encoded once, when they end.

A lean span (lean_spans.py) is still an SDK span: locks, a bounded attribute mapping, the
processors called at its start and end, then encoding. For the spans the chassis makes on
every request and message, in the usual case (a few scalar attributes, the chassis's OTLP
exporter the only processor), all that is needed is the ids, the name, two timestamps, the
attributes and links, written as OTLP bytes at the end: a third of the cost.

``DirectTracer`` makes such spans when it can and lean spans otherwise (another processor on
the provider, SDK-internal metrics, links with attributes or more links than the limit). A
``DirectSpan`` records ``set_attribute(s)`` and ``update_name`` itself; anything else (an
event, a link, a status, an exception, an attribute value that is not a scalar, one attribute
more than the limit allows) first turns it into a lean span with everything it recorded so
far, and from then on the lean span, the SDK's code, does the work.
tests/test_direct_spans.py proves that, for arbitrary operations, limits, parents, links and
samplers, the bytes exported are those of the SDK's own span.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

from .lean_spans import LeanSpan, LeanTracer, Sampled, lean_tracer
from .span_encoding import EncodedSpan, SpanEncoder

# The SDK's warnings, from the SDK's logger, for what it refuses.
_sdk_log = logging.getLogger("opentelemetry.sdk.trace")
_SCALARS = frozenset((str, bool, int, float))

Sink = Callable[[EncodedSpan], None]


class DirectSpan(trace_api.Span):
    def __init__(
        self,
        tracer: DirectTracer,
        name: str,
        sampled: Sampled,
        parent_context: context_api.Context | None,
        kind: trace_api.SpanKind,
        links: Sequence[trace_api.Link],
        record_exception: bool,
        set_status_on_exception: bool,
        start_time: int | None,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._sampled = sampled
        self._context = sampled.context
        self._parent = sampled.parent
        self._parent_context = parent_context
        self._kind = kind
        self._links = links
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._attributes: dict[str, types.AnyValue] = {}
        self._start_time = start_time if start_time is not None else time_ns()
        self._end_time: int | None = None
        self._lean: LeanSpan | None = None

    # -- what a direct span records itself

    def get_span_context(self) -> trace_api.SpanContext:
        return self._context

    def is_recording(self) -> bool:
        if self._lean is not None:
            return self._lean.is_recording()
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._lean is not None:
            self._lean.set_attributes(attributes)
            return
        if self._end_time is not None:
            _sdk_log.warning("Setting attribute on ended span.")
            return
        recorded = self._attributes
        if not recorded and self._took(attributes):
            return
        growth = 0
        for key, value in attributes.items():
            if type(value) not in _SCALARS or type(key) is not str or not key:
                self._become_lean().set_attributes(attributes)  # the SDK's cleaning
                return
            if key not in recorded:
                growth += 1
        limit = self._tracer.max_attributes
        if limit is not None and len(recorded) + growth > limit:
            self._become_lean().set_attributes(attributes)  # the SDK drops the oldest
            return
        length = self._tracer.max_attribute_length
        for key, value in attributes.items():
            if length is not None and type(value) is str:
                value = value[:length]
            recorded.pop(key, None)  # a key set again moves to the end, as the SDK's does
            recorded[key] = value

    def _took(self, attributes: Mapping[str, types.AnyValue]) -> bool:
        """The first attributes, kept as they are when they need no cleaning: scalars under
        string keys, within the limits (the usual case, checked in one pass)."""
        tracer = self._tracer
        if tracer.max_attribute_length is not None or (
            tracer.max_attributes is not None and len(attributes) > tracer.max_attributes
        ):
            return False
        for key, value in attributes.items():
            if type(value) not in _SCALARS or type(key) is not str or not key:
                return False
        self._attributes = dict(attributes)
        return True

    def update_name(self, name: str) -> None:
        if self._lean is not None:
            self._lean.update_name(name)
        elif not self._refused_once_ended("update_name"):
            self._name = name

    def end(self, end_time: int | None = None) -> None:
        if self._lean is not None:
            self._lean.end(end_time)
            return
        if self._end_time is not None:
            _sdk_log.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._sampled.record_end_metrics()
        if self._context.trace_flags.sampled:
            tracer = self._tracer
            data = tracer.encoder.plain_span(
                self._context,
                self._parent,
                self._name,
                self._kind,
                self._start_time,
                self._end_time,
                self._attributes,
                self._links,
            )
            tracer.sink(EncodedSpan(tracer.resource, tracer.scope, data))

    # -- what a lean span does instead

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if not self._refused_once_ended("add_event"):
            self._become_lean().add_event(name, attributes, timestamp)

    def add_link(self, context: trace_api.SpanContext, attributes: types.Attributes = None) -> None:
        if not self._refused_once_ended("add_link"):
            self._become_lean().add_link(context, attributes)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if not self._refused_once_ended("set_status"):
            self._become_lean().set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        if not self._refused_once_ended("record_exception"):
            self._become_lean().record_exception(exception, attributes, timestamp, escaped)

    def _refused_once_ended(self, operation: str) -> bool:
        """Ended (and still direct): the operation changes nothing; the SDK's warning."""
        if self._lean is not None or self._end_time is None:
            return False
        _sdk_log.warning("Tried calling %s on an ended span.", operation)
        return True

    def _become_lean(self) -> LeanSpan:
        """The lean span this span would have been, with what it recorded so far."""
        if self._lean is not None:
            return self._lean
        lean = self._tracer.lean.new_span(
            self._name,
            self._sampled._replace(attributes=self._attributes),
            self._kind,
            self._links,
            self._record_exception,
            self._set_status_on_exception,
        )
        lean.start(start_time=self._start_time, parent_context=self._parent_context)
        self._lean = lean
        return lean


class DirectTracer(trace_api.Tracer):
    """Direct spans while the chassis's encoding processor is the provider's only one."""

    def __init__(
        self,
        lean: LeanTracer,
        provider: TracerProvider,
        encoder: SpanEncoder,
        sink: Sink,
        expected_processors: tuple[Any, ...] | None,
    ) -> None:
        self.lean = lean
        self.encoder = encoder
        self.sink = sink
        self.resource = lean.resource
        self.scope = lean._instrumentation_scope or None
        limits = lean._span_limits
        self.max_attributes = limits.max_span_attributes
        self.max_attribute_length = limits.max_span_attribute_length
        self.max_links = limits.max_links
        self._processors = provider._active_span_processor
        # None in tests, which check the spans' bytes whatever the provider's processors.
        self._expected = expected_processors

    def _direct(self, links: Sequence[trace_api.Link]) -> bool:
        if links:
            if self.max_links is not None and len(links) > self.max_links:
                return False
            for link in links:
                if link.attributes:
                    return False
        return self._expected is None or self._processors._span_processors is self._expected

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        lean = self.lean
        links = links or ()
        if not self._direct(links) or not lean._is_enabled():
            return lean.start_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )
        sampled = lean.sample(name, context, kind, attributes, links)
        if isinstance(sampled, trace_api.NonRecordingSpan):
            return sampled
        span = DirectSpan(
            self,
            name,
            sampled,
            context,
            kind,
            links,
            record_exception,
            set_status_on_exception,
            start_time,
        )
        if sampled.attributes:
            span.set_attributes(sampled.attributes)
        return span

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.lean.start_as_current_span(*args, **kwargs)


def direct_tracer(
    provider: trace_api.TracerProvider,
    name: str,
    version: str | None,
    *,
    encoder: SpanEncoder,
    sink: Sink,
    processor: Any,
) -> trace_api.Tracer:
    """The direct tracer for ``name`` while ``processor`` (the chassis's encoding processor,
    whose ``encoder`` and ``sink`` these are) is the provider's only one; otherwise, or
    when the SDK records its own metrics, the lean tracer."""
    lean = lean_tracer(provider, name, version)
    if not isinstance(lean, LeanTracer) or not isinstance(provider, TracerProvider):
        return lean
    if type(lean._tracer_metrics) is not NoOpTracerMetrics:
        return lean
    processors = provider._active_span_processor._span_processors
    if processors != (processor,):
        return lean
    return DirectTracer(lean, provider, encoder, sink, processors)


__all__ = ["DirectSpan", "DirectTracer", "direct_tracer"]
