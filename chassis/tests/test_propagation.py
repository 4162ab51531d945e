"""The propagators against the W3C specifications and the OpenTelemetry SDK, for arbitrary
headers: baggage relayed byte for byte, decoded and encoded as W3C Baggage says, within its
limits; tracestate as the SDK parses it, but for a repeated key."""

from __future__ import annotations

import re
from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.trace import TraceState

from service_chassis.propagation import (
    MAX_BYTES,
    MAX_MEMBERS,
    W3CBaggagePropagator,
    W3CTraceContextPropagator,
    baggage_header,
    parse_tracestate,
)

PROPAGATOR = W3CBaggagePropagator()

# The W3C Baggage ABNF (https://www.w3.org/TR/baggage/#definition), without optional spaces.
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\%')
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
percent = st.integers(0, 255).map(lambda b: f"%{b:02X}")
values = st.lists(st.one_of(st.text(OCTETS, min_size=1, max_size=4), percent), max_size=6).map(
    "".join
)
properties = st.lists(st.one_of(tokens, st.tuples(tokens, values).map("=".join)), max_size=2).map(
    lambda found: "".join(f";{p}" for p in found)
)
MEMBER = re.compile(
    r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*(;[^,]*)?"
)


@st.composite
def baggage_strings(draw: st.DrawFn, max_members: int = 8) -> list[tuple[str, str, str]]:
    keys = draw(st.lists(tokens, min_size=1, max_size=max_members, unique=True))
    return [(key, draw(values), draw(properties)) for key in keys]


def header_of(members: list[tuple[str, str, str]]) -> str:
    return ",".join(f"{key}={value}{props}" for key, value, props in members)


@given(baggage_strings())
@settings(max_examples=300)
def test_baggage_is_relayed_exactly_as_received(members: list[tuple[str, str, str]]) -> None:
    header = header_of(members)
    context = PROPAGATOR.extract({"baggage": header})
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context)
    assert carrier["baggage"] == header


@given(baggage_strings())
def test_values_are_percent_decoded_as_w3c_says(members: list[tuple[str, str, str]]) -> None:
    context = PROPAGATOR.extract({"baggage": header_of(members)})
    # "+" is a plain character in baggage, not a space (the API's unquote_plus takes it for one).
    assert baggage.get_all(context) == {key: unquote(value) for key, value, _ in members}


@given(st.dictionaries(tokens, st.text(max_size=10), min_size=1, max_size=8))
def test_values_a_service_sets_round_trip_through_a_valid_header(entries: dict[str, str]) -> None:
    context = Context()
    for key, value in entries.items():
        context = baggage.set_baggage(key, value, context)
    header = baggage_header(context)
    assert all(MEMBER.fullmatch(member) for member in header.split(","))
    assert baggage.get_all(PROPAGATOR.extract({"baggage": header})) == entries


@given(baggage_strings(), tokens, st.text(max_size=10))
def test_an_entry_the_service_changes_is_encoded_afresh_and_the_others_kept(
    members: list[tuple[str, str, str]], key: str, value: str
) -> None:
    context = PROPAGATOR.extract({"baggage": header_of(members)})
    changed = baggage.set_baggage(key, value, context)
    sent = PROPAGATOR.extract({"baggage": baggage_header(changed)})
    assert baggage.get_all(sent) == {**baggage.get_all(context), key: value}
    kept = [f"{k}={v}{p}" for k, v, p in members if k != key]
    assert set(kept) <= set(baggage_header(changed).split(","))


def test_a_property_and_an_encoded_space_survive() -> None:
    header = "k1=v1,k2=v2;prop,k3=a%20b"
    context = PROPAGATOR.extract({"baggage": header})
    assert baggage.get_all(context) == {"k1": "v1", "k2": "v2", "k3": "a b"}
    assert baggage_header(context) == header


@given(st.lists(st.tuples(tokens, values), min_size=1, max_size=120, unique_by=lambda m: m[0]))
@settings(max_examples=60)
def test_the_w3c_limits_drop_whole_members(pairs: list[tuple[str, str]]) -> None:
    members = [f"{key}={value}" for key, value in pairs]
    context = PROPAGATOR.extract({"baggage": ",".join(members)})
    header = baggage_header(context)
    sent = header.split(",") if header else []
    # Within the limits every member passes; beyond them, only whole members, in order.
    assert len(sent) <= MAX_MEMBERS
    assert len(header.encode()) <= MAX_BYTES
    assert sent == [m for m in members if m in sent]
    if len(members) <= MAX_MEMBERS and len(",".join(members).encode()) <= MAX_BYTES:
        assert sent == members
    else:
        assert sent == members[:MAX_MEMBERS]  # these values are short: the count limits


def test_an_oversized_member_is_dropped_and_the_rest_kept() -> None:
    big = "big=" + "x" * MAX_BYTES
    context = PROPAGATOR.extract({"baggage": f"a=1,{big},b=2"})
    assert baggage_header(context) == "a=1,b=2"


def test_malformed_members_are_dropped_alone() -> None:
    context = PROPAGATOR.extract({"baggage": 'a=1,no-equals,b="quoted",c=3, d = 4 '})
    assert baggage.get_all(context) == {"a": "1", "c": "3", "d": "4"}


# tracestate: W3C Trace Context, section 3.3 (https://www.w3.org/TR/trace-context/#tracestate-header)
ts_keys = st.from_regex(r"\A[a-z][_0-9a-z\-*/]{0,10}(@[a-z][_0-9a-z\-*/]{0,5})?\Z")
ts_values = st.from_regex(r"\A[\x21-\x2b\x2d-\x3c\x3e-\x7e]{1,10}\Z")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@given(st.lists(st.tuples(ts_keys, ts_values), max_size=40))
def test_tracestate_is_what_the_sdk_parses_with_the_first_of_a_repeated_key(
    pairs: list[tuple[str, str]],
) -> None:
    header = ",".join(f"{key}={value}" for key, value in pairs)
    first: dict[str, str] = {}
    for key, value in pairs:
        first.setdefault(key, value)
    deduplicated = ",".join(f"{key}={value}" for key, value in list(first.items())[:32])
    assert parse_tracestate([header]) == TraceState.from_header([deduplicated])


def test_a_repeated_tracestate_key_keeps_the_state() -> None:
    for state, kept in (
        ("foo=1,foo=1", "foo=1"),
        ("foo=1,foo=2", "foo=1"),
        ("a=1,b=2,a=3", "a=1,b=2"),
    ):
        context = W3CTraceContextPropagator().extract(
            {"traceparent": TRACEPARENT, "tracestate": state}
        )
        span_context = trace.get_current_span(context).get_span_context()
        assert span_context.is_valid
        assert span_context.trace_state.to_header() == kept
