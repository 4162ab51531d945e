"""The decision table stands in for the sampler only where it gives the sampler's answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    get_current_span,
    set_span_in_context,
)

from service_chassis.static_sampling import static_decisions

statics = st.sampled_from([ALWAYS_ON, ALWAYS_OFF])


@st.composite
def static_samplers(draw: st.DrawFn) -> Sampler:
    if draw(st.booleans()):
        return draw(statics)
    return ParentBased(
        draw(statics),
        remote_parent_sampled=draw(statics),
        remote_parent_not_sampled=draw(statics),
        local_parent_sampled=draw(statics),
        local_parent_not_sampled=draw(statics),
    )


@st.composite
def parents(draw: st.DrawFn) -> Context | None:
    """No context, an empty one, an invalid parent, or a valid one of any kind."""
    shape = draw(st.sampled_from(["none", "empty", "invalid", "valid"]))
    if shape == "none":
        return None
    if shape == "empty":
        return Context()
    trace_id = 0 if shape == "invalid" else draw(st.integers(1, 2**128 - 1))
    state = TraceState([("k", "v")]) if draw(st.booleans()) else None
    parent = SpanContext(
        trace_id,
        draw(st.integers(1, 2**64 - 1)),
        is_remote=draw(st.booleans()),
        trace_flags=TraceFlags(draw(st.integers(0, 3))),
        trace_state=state,
    )
    return set_span_in_context(NonRecordingSpan(parent))


@given(static_samplers(), parents(), st.integers(1, 2**128 - 1))
def test_the_table_gives_the_samplers_decision_and_trace_state(
    sampler: Sampler, context: Context | None, trace_id: int
) -> None:
    decisions = static_decisions(sampler)
    assert decisions is not None
    result = sampler.should_sample(context, trace_id, "name")
    span_context = get_current_span(context).get_span_context()
    if not span_context.is_valid:
        assert decisions.root == result.decision.is_sampled()
        assert result.trace_state is None
    else:
        sampled = decisions.sampled(span_context.is_remote, span_context.trace_flags.sampled)
        assert sampled == result.decision.is_sampled()
        assert result.trace_state is span_context.trace_state


class OwnSampler(StaticSampler):
    """A subclass may decide otherwise: never read as a table."""


@pytest.mark.parametrize(
    "sampler",
    [
        TraceIdRatioBased(0.5),
        ParentBased(TraceIdRatioBased(0.5)),
        StaticSampler(Decision.RECORD_ONLY),
        ParentBased(ALWAYS_ON, remote_parent_sampled=StaticSampler(Decision.RECORD_ONLY)),
        OwnSampler(Decision.RECORD_AND_SAMPLE),
        ParentBased(OwnSampler(Decision.RECORD_AND_SAMPLE)),
    ],
)
def test_samplers_that_may_depend_on_the_span_are_called(sampler: Sampler) -> None:
    assert static_decisions(sampler) is None
