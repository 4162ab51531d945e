"""W3C ``traceparent``/``tracestate`` and ``baggage``, passed on as they came.

The OpenTelemetry API's propagators lose what a service should relay untouched: the baggage
propagator decodes values with ``unquote_plus`` and encodes them with ``quote_plus`` (so
``a%20b`` leaves as ``a+b``, and the properties of ``k=v;prop`` are folded into the value as
``v%3Bprop``), and the trace-context propagator throws the whole ``tracestate`` away when a
key repeats. These keep the exact text of every baggage entry the service did not change, and
keep the first of a repeated ``tracestate`` key, as W3C's own test suite allows
(github.com/w3c/trace-context, test/test.py, ``test_tracestate_duplicated_keys``).

Limits are the W3C Baggage specification's (https://www.w3.org/TR/baggage/#limits): a
baggage string of at most 64 list-members and 8192 bytes is passed on whole; beyond that,
whole list-members are dropped (never cut), the later ones first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, unquote

from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.context import Context, create_key, get_current, get_value, set_value
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

BAGGAGE_HEADER = "baggage"
MAX_MEMBERS = 64
MAX_BYTES = 8192

# RFC 7230 token (the key) and W3C baggage-octet (the value, percent-encoded beyond these).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# What quote() may leave as it is in a value: every baggage-octet except "%" itself.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '%",;\\')
# name -> (decoded value, the value's text as received, its properties as received)
_RECEIVED = create_key("service-chassis-baggage-as-received")

Received = dict[str, tuple[str, str, str]]


def _parse_member(member: str) -> tuple[str, str, str, str] | None:
    """(key, decoded value, value text, properties text) of one list-member, or None."""
    pair, semicolon, properties = member.partition(";")
    key, equals, value = pair.partition("=")
    key, value = key.strip(" \t"), value.strip(" \t")
    if not equals or not _TOKEN.fullmatch(key) or not _VALUE.fullmatch(value):
        return None
    return key, unquote(value), value, f";{properties}" if semicolon else ""


def _within_limits(members: list[str]) -> list[str]:
    """The first members that fit in MAX_MEMBERS and MAX_BYTES, joined with commas."""
    kept: list[str] = []
    size = 0
    for member in members:
        added = len(member.encode()) + (1 if kept else 0)
        if len(kept) == MAX_MEMBERS or size + added > MAX_BYTES:
            continue  # a shorter one further on may still fit
        kept.append(member)
        size += added
    return kept


class W3CBaggagePropagator(TextMapPropagator):
    """``baggage`` as W3C specifies it, relayed byte for byte where the service left it."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        context = get_current() if context is None else context
        headers = getter.get(carrier, BAGGAGE_HEADER)
        if not headers:
            return context
        members = [m.strip(" \t") for h in headers for m in h.split(",")]
        received: Received = {}
        for member in _within_limits([m for m in members if m]):
            parsed = _parse_member(member)
            if parsed is None:
                continue  # a malformed member is dropped; the others still count
            key, decoded, text, properties = parsed
            context = baggage.set_baggage(key, decoded, context=context)
            received[key] = (decoded, text, properties)
        return set_value(_RECEIVED, received, context)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        header = baggage_header(context)
        if header:
            setter.set(carrier, BAGGAGE_HEADER, header)

    @property
    def fields(self) -> set[str]:
        return {BAGGAGE_HEADER}


def baggage_header(context: Context | None = None) -> str:
    """The ``baggage`` header for ``context``'s baggage ("" when there is none)."""
    entries = baggage.get_all(context)
    if not entries:
        return ""
    received: Received = get_value(_RECEIVED, context) or {}  # type: ignore[assignment]
    members = []
    for key, value in entries.items():
        if not _TOKEN.fullmatch(key):
            continue
        text = str(value)
        as_received = received.get(key)
        if as_received is not None and as_received[0] == text:
            members.append(f"{key}={as_received[1]}{as_received[2]}")
        else:
            members.append(f"{key}={quote(text, safe=_SAFE)}")
    return ",".join(_within_limits(members))


class W3CTraceContextPropagator(TraceContextTextMapPropagator):
    """The SDK's ``traceparent`` handling, with a ``tracestate`` that survives a repeated key."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        extracted = super().extract(carrier, context=context, getter=getter)
        span_context = trace.get_current_span(extracted).get_span_context()
        headers = getter.get(carrier, "tracestate")
        if not span_context.is_valid or not headers or span_context.trace_state:
            return extracted
        state = parse_tracestate(headers)
        if not state:
            return extracted
        kept = trace.SpanContext(
            trace_id=span_context.trace_id,
            span_id=span_context.span_id,
            is_remote=True,
            trace_flags=span_context.trace_flags,
            trace_state=state,
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(kept), context)


_MEMBER = re.compile(
    r"([a-z0-9][_0-9a-z\-\*\/]{0,255}|[a-z0-9][_0-9a-z\-\*\/]{0,240}@[a-z][_0-9a-z\-\*\/]{0,13})"
    r"=([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])"
)
MAX_TRACESTATE_MEMBERS = 32


def parse_tracestate(headers: list[str]) -> trace.TraceState:
    """``tracestate`` members in order, the first of a repeated key kept; a malformed member
    voids the whole header, as the W3C specification asks."""
    pairs: dict[str, str] = {}
    for header in headers:
        for member in header.split(","):
            member = member.strip(" \t")
            if not member:
                continue
            match = _MEMBER.fullmatch(member)
            if match is None:
                return trace.TraceState()
            key, value = match.groups()
            pairs.setdefault(key, value)
    return trace.TraceState(list(pairs.items())[:MAX_TRACESTATE_MEMBERS])


# The global textmap install_propagators made, and its propagators in order.
_installed: tuple[TextMapPropagator, list[TextMapPropagator]] | None = None


def install_propagators() -> None:
    """Make these the process's propagators, unless OTEL_PROPAGATORS names others."""
    global _installed
    configured = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage")
    names = [name.strip().lower() for name in configured.split(",") if name.strip()]
    known: Mapping[str, Any] = {
        "tracecontext": W3CTraceContextPropagator,
        "baggage": W3CBaggagePropagator,
    }
    if not names or any(name not in known for name in names):
        return  # the SDK's own choice from OTEL_PROPAGATORS stands
    propagators = [known[name]() for name in names]
    textmap = CompositePropagator(propagators)
    propagate.set_global_textmap(textmap)
    _installed = (textmap, propagators)


# --- The same headers without the generic path, for a span per message -----------------

# A traceparent as this module writes it: anything else takes the propagator's own path.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID, _ZERO_SPAN_ID = "0" * 32, "0" * 16
_TRACE_FLAGS = [trace.TraceFlags(value) for value in range(256)]


def _direct() -> list[TextMapPropagator] | None:
    """The propagators in use, when they are still those install_propagators made."""
    installed = _installed
    if installed is None or propagate.get_global_textmap() is not installed[0]:
        return None
    return installed[1]


def inject(
    carrier: MutableMapping[str, str],
    context: Context,
    span_context: trace.SpanContext | None = None,
) -> None:
    """Exactly what ``propagate.inject(carrier, context)`` writes; with this module's
    propagators, ``traceparent`` is formatted directly (the composite, the setter and the
    span lookups cost more than the header). ``span_context``, when given, is that of the
    span ``context`` holds, which the caller already has."""
    propagators = _direct()
    if propagators is None:
        propagate.inject(carrier, context)
        return
    for propagator in propagators:
        if type(propagator) is W3CBaggagePropagator and not context.get(_BAGGAGE_KEY):
            continue  # no baggage, no header (the usual case, at the cost of a lookup)
        if type(propagator) is not W3CTraceContextPropagator:
            propagator.inject(carrier, context)
            continue
        if span_context is None:
            span_context = trace.get_current_span(context).get_span_context()
        if span_context == trace.INVALID_SPAN_CONTEXT:
            continue
        carrier["traceparent"] = (
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
            f"-{span_context.trace_flags:02x}"
        )
        if span_context.trace_state:
            carrier["tracestate"] = span_context.trace_state.to_header()


def extract(carrier: CarrierT, getter: Getter[CarrierT]) -> Context:
    """Exactly what ``propagate.extract(carrier, Context(), getter=getter)`` returns; with
    this module's propagators, a well-formed ``traceparent`` without ``tracestate`` is parsed
    directly, anything else by the propagator."""
    propagators = _direct()
    if propagators is None:
        return propagate.extract(carrier, Context(), getter=getter)
    context = Context()
    for propagator in propagators:
        if type(propagator) is W3CTraceContextPropagator:
            context = _traceparent(propagator, carrier, context, getter)
        else:
            context = propagator.extract(carrier, context, getter)
    return context


def _traceparent(
    propagator: TextMapPropagator, carrier: CarrierT, context: Context, getter: Getter[CarrierT]
) -> Context:
    header = getter.get(carrier, "traceparent")
    if not header:
        return context
    match = _TRACEPARENT.fullmatch(header[0])
    if match is None or getter.get(carrier, "tracestate") is not None:
        return propagator.extract(carrier, context, getter)
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return context
    # SpanContext(...) less its checks: the pattern admits only valid, non-zero ids.
    remote = tuple.__new__(
        trace.SpanContext,
        (
            int(trace_id, 16),
            int(span_id, 16),
            True,
            _TRACE_FLAGS[int(flags, 16)],
            trace.DEFAULT_TRACE_STATE,
            True,
        ),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(remote), context)
