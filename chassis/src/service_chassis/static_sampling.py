"""The sampler's decision without calling it, when it cannot depend on the span.

A service samples with ``parentbased_always_on`` unless told otherwise: the decision follows
the parent's sampled flag, or is "sample" for a root span. The SDK still calls the sampler for
every span (the parent looked up twice, a ``SamplingResult`` and a read-only view of the
attributes made), about 2 us of the chassis's spans' few. When the sampler is the SDK's
``ParentBased`` whose root and four delegates are ``StaticSampler``s (always on or always
off), or one such ``StaticSampler`` alone, the decision is a table lookup on the parent's
flags; the trace state is the parent's, as ``StaticSampler`` returns it.
tests/test_static_sampling.py proves it equals the sampler's result for arbitrary parents.
Any other sampler (a ratio, a custom one, ``RECORD_ONLY``) is called as the SDK calls it.
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, StaticSampler

_STATIC = {Decision.RECORD_AND_SAMPLE: True, Decision.DROP: False}


class StaticDecisions(NamedTuple):
    """Whether a span is sampled, by where its parent is: none (a root span), remote
    sampled, remote not sampled, local sampled, local not sampled."""

    root: bool
    remote_sampled: bool
    remote_not_sampled: bool
    local_sampled: bool
    local_not_sampled: bool

    def sampled(self, parent_is_remote: bool, parent_sampled: bool) -> bool:
        """The decision for a span with a valid parent."""
        if parent_is_remote:
            return self.remote_sampled if parent_sampled else self.remote_not_sampled
        return self.local_sampled if parent_sampled else self.local_not_sampled


def _static(sampler: Sampler) -> bool | None:
    """The fixed decision of a ``StaticSampler`` that samples or drops (not a subclass, whose
    ``should_sample`` may be its own)."""
    if type(sampler) is not StaticSampler:
        return None
    return _STATIC.get(sampler._decision)


def static_decisions(sampler: Sampler) -> StaticDecisions | None:
    """The decision table of ``sampler``, when its decisions depend on the parent only."""
    single = _static(sampler)
    if single is not None:
        return StaticDecisions(single, single, single, single, single)
    if type(sampler) is not ParentBased:
        return None
    decisions = [
        _static(delegate)
        for delegate in (
            sampler._root,
            sampler._remote_parent_sampled,
            sampler._remote_parent_not_sampled,
            sampler._local_parent_sampled,
            sampler._local_parent_not_sampled,
        )
    ]
    if any(decision is None for decision in decisions):
        return None
    return StaticDecisions(*(bool(decision) for decision in decisions))


__all__ = ["StaticDecisions", "static_decisions"]
