"""A cheaper way to the SDK's spans, for the spans the chassis makes on every request and
message (the HTTP server span, the messaging send and process spans).

``lean_tracer(provider, ...)`` is the provider's own SDK tracer (same sampler, span limits,
id generator, resource, scope and span processors, so ``OTEL_TRACES_SAMPLER``,
``OTEL_SPAN_*_LIMIT`` and ``OTEL_SDK_DISABLED`` apply unchanged) whose recording spans are
``LeanSpan``s: SDK spans that

- clean scalar attribute values inline instead of through the generic validation (which tests
  each value against ``abc.Sequence`` and takes a lock per attribute), falling back to it for
  anything else;
- create the bounded lists of events and links only when a span has some;
- hand themselves to the processors' ``on_end`` instead of a copy: an ended span refuses
  every change, so the copy holds nothing the span does not.

Everything else (``start``, ``end``, status, events, links, exceptions) is the SDK's own code.
Spans of other instrumentations keep using the SDK's tracers and flow through the same
processors. tests/test_lean_spans.py proves that a lean span exports exactly what the SDK's
span exports, for arbitrary names, kinds, attributes, limits, parents, links and samplers.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationInfo, InstrumentationScope
from opentelemetry.trace.span import _SPAN_ID_MAX_VALUE, _TRACE_ID_MAX_VALUE
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

from .static_sampling import StaticDecisions, static_decisions

_UNSET = Status(StatusCode.UNSET)
_DEFAULT_TRACE_STATE = trace_api.DEFAULT_TRACE_STATE
# The trace flags of a span by (sampled, random trace id), made once.
_FLAGS = {
    (sampled, random): trace_api.TraceFlags(
        (trace_api.TraceFlags.SAMPLED if sampled else 0)
        | (trace_api.TraceFlags.RANDOM_TRACE_ID if random else 0)
    )
    for sampled in (False, True)
    for random in (False, True)
}
_SCALARS = (str, bool, int, float)


class LeanAttributes(BoundedAttributes):
    """``BoundedAttributes`` with scalar values cleaned inline (the SDK's rules: a string is
    cut to ``max_value_len``; booleans, integers and floats pass as they are)."""

    def __init__(self, maxlen: int | None, max_value_len: int | None) -> None:
        # BoundedAttributes.__init__ without its argument checks: the limits are the SDK's.
        self._dict: dict[str, types.AnyValue] = {}
        self.maxlen = maxlen
        self.dropped = 0
        self.max_value_len = max_value_len
        self._lock = threading.Lock()
        self._immutable = False

    def set_many(self, attributes: Mapping[str, types.AnyValue]) -> None:
        simple = self.maxlen != 0
        for key, value in attributes.items():
            if type(value) not in _SCALARS or type(key) is not str or not key:
                simple = False
                break
        if not simple:
            self._set_items(attributes)  # the SDK's own path, warnings and all
            return
        limit = self.max_value_len
        with self._lock:
            for key, value in attributes.items():
                if limit is not None and type(value) is str:
                    value = value[:limit]
                self._setitem_locked(key, value)

    def __setitem__(self, key: str, value: types.AnyValue) -> None:
        if type(value) not in _SCALARS or type(key) is not str or not key or self.maxlen == 0:
            super().__setitem__(key, value)
            return
        self._raise_if_immutable()
        if self.max_value_len is not None and type(value) is str:
            value = value[: self.max_value_len]
        with self._lock:
            self._setitem_locked(key, value)


class LeanSpan(SdkSpan):
    # The SDK's __init__, minus what a span of the chassis rarely needs up front.
    def __init__(
        self,
        name: str,
        context: trace_api.SpanContext,
        parent: trace_api.SpanContext | None,
        sampler: Sampler,
        resource: Any,
        attributes: types.Attributes,
        span_processor: Any,
        kind: trace_api.SpanKind,
        links: Sequence[trace_api.Link],
        instrumentation_info: InstrumentationInfo | None,
        record_exception: bool,
        set_status_on_exception: bool,
        limits: SpanLimits,
        instrumentation_scope: InstrumentationScope | None,
        record_end_metrics: Any,
    ) -> None:
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = instrumentation_info
        self._instrumentation_scope = instrumentation_scope
        self._parent = parent
        self._start_time: int | None = None
        self._end_time: int | None = None
        self._resource = resource
        self._status = _UNSET
        self._sampler = sampler
        self._trace_config = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._span_processor = span_processor
        self._limits = limits
        self._lock = threading.Lock()
        lean = LeanAttributes(limits.max_span_attributes, limits.max_span_attribute_length)
        if attributes:
            lean.set_many(attributes)
        self._attributes = self._lean_attributes = lean
        self._events = ()
        self._links = self._new_links(links) if links else ()
        self._record_end_metrics = record_end_metrics

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is None:
                self._lean_attributes.set_many(attributes)
                return
        super().set_attributes(attributes)  # ended: the SDK's warning (it takes the lock)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if not isinstance(self._events, BoundedList):
            self._events = BoundedList(self._limits.max_events)
        super().add_event(name, attributes, timestamp)

    def add_link(self, context: trace_api.SpanContext, attributes: types.Attributes = None) -> None:
        if not isinstance(self._links, BoundedList):
            self._links = self._new_links(())
        super().add_link(context, attributes)

    def _readable_span(self) -> ReadableSpan:
        return self  # ended: every change is refused from now on


class Sampled(NamedTuple):
    """A span the sampler records: its parent, its own context and its first attributes."""

    parent: trace_api.SpanContext | None
    context: trace_api.SpanContext
    attributes: types.Attributes
    record_end_metrics: Any


class LeanTracer(SdkTracer):
    """The SDK tracer's ``start_span``, making ``LeanSpan``s."""

    # The sampler's decision table when it depends on the parent only (lean_tracer sets it).
    _decisions: StaticDecisions | None = None

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
        links = links or ()
        if not self._is_enabled():
            current = trace_api.get_current_span(context).get_span_context()
            return trace_api.NonRecordingSpan(context=current)
        sampled = self.sample(name, context, kind, attributes, links)
        if isinstance(sampled, trace_api.NonRecordingSpan):
            return sampled
        span = self.new_span(name, sampled, kind, links, record_exception, set_status_on_exception)
        span.start(start_time=start_time, parent_context=context)
        return span

    def sample(
        self,
        name: str,
        context: context_api.Context | None,
        kind: trace_api.SpanKind,
        attributes: types.Attributes,
        links: Sequence[trace_api.Link],
    ) -> Sampled | trace_api.NonRecordingSpan:
        """The ids and the sampler's decision, as the SDK's ``start_span`` makes them; a
        non-recording span when the sampler does not record."""
        current = trace_api.get_current_span(context).get_span_context()
        parent: trace_api.SpanContext | None = current
        if current is None or not current.is_valid:
            parent = None
            trace_id = self.id_generator.generate_trace_id()
            random_trace_id = self.id_generator.is_trace_id_random()
        else:
            trace_id = current.trace_id
            random_trace_id = current.trace_flags.random_trace_id
        decisions = self._decisions
        if decisions is not None:  # the sampler's answer without calling it (static_sampling.py)
            return self._sample_static(decisions, parent, trace_id, random_trace_id, attributes)
        decision: Any  # the SDK's Decision methods are untyped
        result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        decision, trace_state = result.decision, result.trace_state
        attributes = result.attributes
        flags = trace_api.TraceFlags.SAMPLED if decision.is_sampled() else 0
        if random_trace_id:
            flags |= trace_api.TraceFlags.RANDOM_TRACE_ID
        span_context = trace_api.SpanContext(
            trace_id,
            self.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=trace_api.TraceFlags(flags),
            trace_state=trace_state,
        )
        record_end_metrics = self._tracer_metrics.start_span(parent, decision)
        if not decision.is_recording():
            return trace_api.NonRecordingSpan(context=span_context)
        return Sampled(parent, span_context, attributes, record_end_metrics)

    def _sample_static(
        self,
        decisions: StaticDecisions,
        parent: trace_api.SpanContext | None,
        trace_id: int,
        random_trace_id: bool,
        attributes: types.Attributes,
    ) -> Sampled | trace_api.NonRecordingSpan:
        """``sample`` for a sampler whose decision is a table lookup: the same span context,
        made without the enum's methods and ``SpanContext``'s checks (the validity is
        worked out here as ``SpanContext`` works it out)."""
        if parent is None:
            sampled, trace_state = decisions.root, _DEFAULT_TRACE_STATE
        else:
            sampled = decisions.sampled(parent.is_remote, parent.trace_flags.sampled)
            trace_state = parent.trace_state  # never None: SpanContext fills in the default
        span_id = self.id_generator.generate_span_id()
        span_context = tuple.__new__(
            trace_api.SpanContext,
            (
                trace_id,
                span_id,
                False,
                _FLAGS[sampled, random_trace_id],
                trace_state,
                0 < trace_id <= _TRACE_ID_MAX_VALUE and 0 < span_id <= _SPAN_ID_MAX_VALUE,
            ),
        )
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
        record_end_metrics = self._tracer_metrics.start_span(parent, decision)
        if not sampled:
            return trace_api.NonRecordingSpan(context=span_context)
        return Sampled(parent, span_context, attributes, record_end_metrics)

    def new_span(
        self,
        name: str,
        sampled: Sampled,
        kind: trace_api.SpanKind,
        links: Sequence[trace_api.Link],
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> LeanSpan:
        """A lean span of this tracer, not yet started."""
        return LeanSpan(
            name,
            sampled.context,
            sampled.parent,
            self.sampler,
            self.resource,
            sampled.attributes,
            self.span_processor,
            kind,
            links,
            self.instrumentation_info,
            record_exception,
            set_status_on_exception,
            self._span_limits,
            self._instrumentation_scope,
            sampled.record_end_metrics,
        )


def lean_tracer(
    provider: trace_api.TracerProvider, name: str, version: str | None = None
) -> trace_api.Tracer:
    """The provider's tracer for ``name``, making lean spans when it is the SDK's."""
    tracer = provider.get_tracer(name, version)
    if type(tracer) is not SdkTracer or not isinstance(provider, TracerProvider):
        return tracer  # a no-op tracer (OTEL_SDK_DISABLED) or another SDK: as it is
    lean = LeanTracer.__new__(LeanTracer)
    lean.__dict__.update(tracer.__dict__)
    lean._decisions = static_decisions(lean.sampler)
    return lean
