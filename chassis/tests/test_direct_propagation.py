"""propagation.inject and propagation.extract write and read exactly what the installed
propagators do, for arbitrary headers, whichever propagators are installed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.trace import SpanContext, TraceFlags, TraceState

from service_chassis import propagation

GETTER = DefaultGetter()

hex_digits = st.text("0123456789abcdef", min_size=1, max_size=1)


def hex_of(length: int) -> st.SearchStrategy[str]:
    # All zeros (invalid) now and then, else arbitrary.
    return st.one_of(
        st.just("0" * length), st.text("0123456789abcdefABCDEF", min_size=length, max_size=length)
    )


traceparents = st.one_of(
    st.builds(
        lambda version, trace_id, span_id, flags, tail: (
            f"{version}-{trace_id}-{span_id}-{flags}{tail}"
        ),
        st.sampled_from(["00", "01", "ff", "0g"]),
        hex_of(32),
        hex_of(16),
        st.sampled_from(["00", "01", "03", "ff", "1"]),
        st.sampled_from(["", "-", "-extra", " ", "\t"]),
    ),
    st.text(max_size=60),
)
members = st.from_regex(r"\A[a-z][a-z0-9]{0,4}=[a-z0-9]{1,4}\Z")
headers = st.fixed_dictionaries(
    {},
    optional={
        "traceparent": traceparents,
        "tracestate": st.lists(members, max_size=4).map(",".join),
        "baggage": st.lists(members, max_size=4).map(",".join),
        "content-type": st.just("application/json"),
    },
)
span_contexts = st.builds(
    lambda trace_id, span_id, flags, state: SpanContext(
        trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags), trace_state=state
    ),
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 2, 3]),
    st.lists(st.tuples(st.sampled_from(["a", "b", "vendor@x"]), st.just("v")), max_size=2).map(
        lambda pairs: TraceState(list(dict(pairs).items()))
    ),
)


@pytest.fixture(params=["tracecontext,baggage", "baggage,tracecontext", "tracecontext"])
def installed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    before = propagate.get_global_textmap()
    monkeypatch.setenv("OTEL_PROPAGATORS", request.param)
    propagation.install_propagators()
    yield
    propagate.set_global_textmap(before)


def injected(context: Context) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context)
    return carrier


def same_context(one: Context, other: Context) -> None:
    assert trace.get_current_span(one).get_span_context() == (
        trace.get_current_span(other).get_span_context()
    )
    assert baggage.get_all(one) == baggage.get_all(other)
    assert injected(one) == injected(other)  # baggage as received, tracestate as parsed


@pytest.mark.usefixtures("installed")
@given(headers)
def test_extract_reads_what_the_propagators_read(carrier: dict[str, Any]) -> None:
    same_context(
        propagation.extract(carrier, GETTER), propagate.extract(carrier, Context(), getter=GETTER)
    )


@pytest.mark.usefixtures("installed")
@given(span_contexts, st.dictionaries(st.sampled_from(["k1", "k2"]), st.just("a b"), max_size=2))
def test_inject_writes_what_the_propagators_write(
    span_context: SpanContext, entries: dict[str, str]
) -> None:
    context = Context()
    for key, value in entries.items():
        context = baggage.set_baggage(key, value, context)
    context = trace.set_span_in_context(trace.NonRecordingSpan(span_context), context)
    carrier: dict[str, str] = {}
    propagation.inject(carrier, context)
    assert list(carrier.items()) == list(injected(context).items())
    given_context: dict[str, str] = {}  # the caller handing over the span's context it has
    propagation.inject(given_context, context, span_context)
    assert given_context == carrier


def test_other_propagators_are_used_as_they_are() -> None:
    class Marker(propagation.W3CBaggagePropagator):
        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            carrier["marker"] = "1"

        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Context:
            return baggage.set_baggage("marker", "1", context)

    before = propagate.get_global_textmap()
    propagation.install_propagators()
    propagate.set_global_textmap(Marker())
    try:
        carrier: dict[str, str] = {}
        propagation.inject(carrier, Context())
        assert carrier == {"marker": "1"}
        assert baggage.get_all(propagation.extract({}, GETTER)) == {"marker": "1"}
    finally:
        propagate.set_global_textmap(before)
