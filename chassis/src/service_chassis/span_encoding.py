"""OTLP protobuf encoding of finished spans, written straight to bytes.

The OpenTelemetry SDK's encoder builds a protobuf object per span, attribute and value, which
costs about 30 us per span in Python: with every request traced, more than the request itself.
This encoder writes the same wire format directly and caches the encoding of repeated
attributes, resources and scopes, at a fraction of the cost (scripts/bench_http.py shows the
difference). tests/test_span_encoding.py proves that it decodes to exactly the message the
SDK's encoder builds, for arbitrary spans.

Wire format: https://protobuf.dev/programming-guides/encoding/ ; messages:
opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack

# OTLP's SpanKind numbers are the API's plus one (0 is "unspecified").
_KIND = {kind: kind.value + 1 for kind in SpanKind}
# SpanFlags: bit 8 says whether bit 9 (parent is remote) is known; it always is here.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_FLAGS = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE)
_REMOTE_PARENT_FLAGS = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)
_CACHE_LIMIT = 4096
# Ids are big-endian bytes, times little-endian fixed64: each group packed in one call, tags
# included (trace_id 1 and span_id 2 with their lengths, parent_span_id 4, times 7 and 8).
_IDS = struct.Struct(">HQQHQ").pack
_TRACE_ID_TAG, _SPAN_ID_TAG, _PARENT_ID_TAG = 0x0A10, 0x1208, 0x2208
_PARENT_ID = struct.Struct(">HQ").pack
_TIMES = struct.Struct("<BQBQ").pack
_LOW_64 = (1 << 64) - 1
_LINK_FIELD = b"\x6a\x21"  # links (13), 33 bytes: the ids (28) and the flags (5)
_LINK_FLAGS = b"\x35" + _FIXED32(_HAS_IS_REMOTE)
_REMOTE_LINK_FLAGS = b"\x35" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)
_KIND_FIELD = {kind: b"\x30" + bytes([number]) for kind, number in _KIND.items()}


class EncodedSpan(NamedTuple):
    """A finished span as its ``Span`` message, encoded when it ended: a queued span then
    holds a few bytes instead of the span's objects (tracing.EncodingBatchSpanProcessor).
    A named tuple: made once per span, and a tuple is made in half the time of a frozen
    dataclass."""

    resource: Resource
    scope: InstrumentationScope | None
    data: bytes


# One scope's encoded spans, as grouped for an export request.
_ScopeGroup = tuple[InstrumentationScope | None, list[bytes]]


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 in two's complement, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths and small numbers, encoded once: most varints of a span are below this.
_SMALL_VARINTS = [_encode_varint(value) for value in range(1 << 14)]


def _varint(value: int) -> bytes:
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    return _encode_varint(value)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _value(value: Any) -> bytes:
    """An AnyValue message body."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _field(b"\x32", pairs)
    raise TypeError(f"cannot encode attribute value of type {type(value).__name__}")


# String attributes whose values differ from span to span: encoded each time, never cached.
UNIQUE_KEYS = frozenset(("messaging.message.id", "url.path", "url.query", "url.full"))
_KEY_FIELDS: dict[str, bytes] = {}


def _unique_string(tag: bytes, key: str, value: str) -> bytes:
    """``_field(tag, _key_value(key, value))`` for a string value of a key in UNIQUE_KEYS,
    the key's part written once."""
    key_field = _KEY_FIELDS.get(key)
    if key_field is None:
        key_field = _KEY_FIELDS[key] = _field(b"\x0a", key.encode())
    text = value.encode()
    any_value = b"\x0a" + _varint(len(text)) + text
    pair = key_field + b"\x12" + _varint(len(any_value)) + any_value
    return tag + _varint(len(pair)) + pair


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode()) + _field(b"\x12", _value(value))


class SpanEncoder:
    """Encodes batches of spans into ``ExportTraceServiceRequest`` bytes.

    One instance per exporter: it caches the encodings of attributes (method, route, status
    and the like repeat on every request), resources and instrumentation scopes.
    """

    def __init__(self) -> None:
        # The whole field (tag, length, key and value), by tag, key, type and value.
        self._attribute_cache: dict[tuple[bytes, str, type, Any], bytes] = {}
        self._resource_cache: dict[int, tuple[Resource, bytes]] = {}
        self._scope_cache: dict[int, tuple[InstrumentationScope | None, bytes]] = {}

    def encode(self, spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
        """An ``ExportTraceServiceRequest`` of ``spans``, encoded now or beforehand."""
        # Group by resource, then by scope, as the SDK encoder does.
        grouped: dict[int, tuple[Resource, dict[int, _ScopeGroup]]] = {}
        for item in spans:
            encoded = item if isinstance(item, EncodedSpan) else self.encode_span(item)
            resource, scope = encoded.resource, encoded.scope
            by_scope = grouped.setdefault(id(resource), (resource, {}))[1]
            by_scope.setdefault(id(scope), (scope, []))[1].append(encoded.data)
        out = []
        for resource, by_scope in grouped.values():
            scope_spans = []
            for scope, encoded_spans in by_scope.values():
                body = _field(b"\x0a", self._scope(scope))
                body += b"".join(_field(b"\x12", encoded) for encoded in encoded_spans)
                if scope is not None and scope.schema_url:
                    body += _field(b"\x1a", scope.schema_url.encode())
                scope_spans.append(_field(b"\x12", body))
            resource_spans = _field(b"\x0a", self._resource(resource)) + b"".join(scope_spans)
            if resource.schema_url:
                resource_spans += _field(b"\x1a", resource.schema_url.encode())
            out.append(_field(b"\x0a", resource_spans))
        return b"".join(out)

    def encode_span(self, span: ReadableSpan) -> EncodedSpan:
        """One span's ``Span`` message, with what groups it in a request."""
        return EncodedSpan(span.resource, span.instrumentation_scope or None, self._span(span))

    def plain_span(
        self,
        context: SpanContext,
        parent: SpanContext | None,
        name: str,
        kind: SpanKind,
        start_time: int,
        end_time: int,
        attributes: Mapping[str, Any],
        links: Sequence[Any] = (),
    ) -> bytes:
        """The ``Span`` message of a span with no events, links without attributes, no
        status and nothing dropped, from its fields (direct_spans.py): what ``_span`` writes
        for such a span."""
        parts = _head(context, parent, name, kind, start_time, end_time)
        if attributes:
            parts.append(self._attributes(b"\x4a", attributes))
        for link in links:
            trace_id, span_id, remote, _, _, _ = link.context  # a tuple: no property calls
            body = _IDS(_TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW_64, _SPAN_ID_TAG, span_id)
            # A link without attributes: ids and flags, always 33 bytes.
            parts.append(_LINK_FIELD + body + (_REMOTE_LINK_FLAGS if remote else _LINK_FLAGS))
        parts.append(b"\x7a\x00")  # an unset status
        parts.append(_REMOTE_PARENT_FLAGS if parent is not None and parent.is_remote else _FLAGS)
        return b"".join(parts)

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        assert context is not None  # a recorded span always has one
        parent = span.parent
        parts = _head(context, parent, span.name, span.kind, span.start_time, span.end_time)
        attributes = _span_attributes(span)
        if attributes:
            parts.append(self._attributes(b"\x4a", attributes))
        # The SDK's spans keep their events and links in lists the properties copy: read
        # directly, they cost nothing when there are none (the usual case).
        events, links = _events_and_links(span)
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        for event in events:
            event_body = b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b""
            if event.name:
                event_body += _field(b"\x12", event.name.encode())
            if event.attributes:
                event_body += self._attributes(b"\x1a", event.attributes)
            if event.dropped_attributes:
                event_body += b"\x20" + _varint(event.dropped_attributes)
            parts.append(_field(b"\x5a", event_body))
        if span.dropped_events:
            parts.append(b"\x60" + _varint(span.dropped_events))
        for link in links:
            link_body = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big")
            link_body += b"\x12\x08" + link.context.span_id.to_bytes(8, "big")
            if link.attributes:
                link_body += self._attributes(b"\x22", link.attributes)
            if link.dropped_attributes:
                link_body += b"\x28" + _varint(link.dropped_attributes)
            link_body += b"\x35" + _FIXED32(_flags(link.context))
            parts.append(_field(b"\x6a", link_body))
        if span.dropped_links:
            parts.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        if status.description or status.status_code.value:
            status_body = b""
            if status.description:
                status_body += _field(b"\x12", status.description.encode())
            if status.status_code.value:
                status_body += b"\x18" + _varint(status.status_code.value)
            parts.append(_field(b"\x7a", status_body))
        else:
            parts.append(b"\x7a\x00")  # an empty status, as the SDK's encoder writes it
        parts.append(_REMOTE_PARENT_FLAGS if parent is not None and parent.is_remote else _FLAGS)
        return b"".join(parts)

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any]) -> bytes:
        cache = self._attribute_cache
        out = []
        for key, value in _items(attributes):
            if key in UNIQUE_KEYS and type(value) is str:
                out.append(_unique_string(tag, key, value))
                continue
            try:
                cache_key = (tag, key, type(value), value)
                encoded = cache.get(cache_key)
            except TypeError:  # unhashable (a list): encode every time
                cache_key, encoded = None, None
            if encoded is None:
                encoded = _field(tag, _key_value(key, value))
                if cache_key is not None:
                    # Values unique to a span (an order id a service set) would fill the
                    # cache for good; emptied when full, it refills with what repeats.
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[cache_key] = encoded
            out.append(encoded)
        return b"".join(out)

    def _resource(self, resource: Resource) -> bytes:
        return _cached(self._resource_cache, resource, self._encode_resource)

    def _encode_resource(self, resource: Resource) -> bytes:
        return self._attributes(b"\x0a", resource.attributes)

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        return _cached(self._scope_cache, scope, self._encode_scope)

    def _encode_scope(self, scope: InstrumentationScope | None) -> bytes:
        if scope is None:
            return b""
        body = _field(b"\x0a", scope.name.encode()) if scope.name else b""
        if scope.version:
            body += _field(b"\x12", scope.version.encode())
        if scope.attributes:
            body += self._attributes(b"\x1a", scope.attributes)
        return body


def _cached(cache: dict[int, tuple[Any, bytes]], key: Any, encode: Callable[[Any], bytes]) -> bytes:
    # Keyed by identity and holding the object, so an id is never reused while cached.
    entry = cache.get(id(key))
    if entry is not None and entry[0] is key:
        return entry[1]
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    encoded = encode(key)
    cache[id(key)] = (key, encoded)
    return encoded


def _items(attributes: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """The pairs of attributes. The SDK's ``BoundedAttributes`` iterates as a generic
    Mapping (a lookup per key, a lock while mutable); those of an ended span, event or link
    no longer change, so their dictionary is read directly."""
    if isinstance(attributes, BoundedAttributes):
        return attributes._dict.items()
    return attributes.items()


def _span_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    # ReadableSpan.attributes wraps the SDK's attributes in a read-only proxy; the
    # attributes themselves are what _items reads fastest.
    raw = getattr(span, "_attributes", None)
    return raw if isinstance(raw, BoundedAttributes) else (span.attributes or {})


def _head(
    context: SpanContext,
    parent: SpanContext | None,
    name: str,
    kind: SpanKind,
    start_time: int | None,
    end_time: int | None,
) -> list[bytes]:
    """The fields before the attributes: ids, trace state, parent, name, kind and times."""
    trace_id, span_id, _, _, trace_state, _ = context  # a tuple: no property calls
    parts = [_IDS(_TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW_64, _SPAN_ID_TAG, span_id)]
    if trace_state:
        state = ",".join(f"{key}={value}" for key, value in trace_state.items())
        parts.append(_field(b"\x1a", state.encode()))
    if parent is not None:
        parts.append(_PARENT_ID(_PARENT_ID_TAG, parent[1]))
    if name:
        parts.append(_name_field(name))
    parts.append(_KIND_FIELD[kind])
    if start_time and end_time:
        parts.append(_TIMES(0x39, start_time, 0x41, end_time))
    else:
        if start_time:
            parts.append(b"\x39" + _FIXED64(start_time))
        if end_time:
            parts.append(b"\x41" + _FIXED64(end_time))
    return parts


_names: dict[str, bytes] = {}


def _name_field(name: str) -> bytes:
    """A span's name field; the few names a service's spans have are encoded once."""
    encoded = _names.get(name)
    if encoded is None:
        encoded = _field(b"\x2a", name.encode())
        if len(_names) < _CACHE_LIMIT:
            _names[name] = encoded
    return encoded


def _events_and_links(span: ReadableSpan) -> tuple[Sequence[Any], Sequence[Any]]:
    events = getattr(span, "_events", None)
    links = getattr(span, "_links", None)
    if events is None or links is None:  # a ReadableSpan of another kind: its properties
        return span.events, span.links
    return events, links


def _flags(parent: SpanContext | None) -> int:
    if parent is not None and parent.is_remote:
        return _HAS_IS_REMOTE | _IS_REMOTE
    return _HAS_IS_REMOTE
