"""The breaker against a reference model under arbitrary sequences of calls and clock moves.

The model keeps every outcome in a list and recomputes each answer from scratch by filtering it:
slow, but plainly what the specification says. The breaker keeps O(1) bucketed totals. After
every step their states, permit decisions, `retry_after` hints and reported transitions must
agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from service_chassis.resilience.breaker import (
    HALF_OPEN_RETRY_AFTER,
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Permit,
)
from service_chassis.resilience.clock import ManualClock

SLOW_CALL_DURATION = 1.0


@dataclass
class ModelPermit:
    period: int
    reported: bool = False
    released: bool = False


@dataclass
class Outcome:
    period: int
    at: float
    failed: bool
    slow: bool


class ReferenceBreaker:
    def __init__(self, config: BreakerConfig, clock: ManualClock) -> None:
        self.config = config
        self.clock = clock
        self.state = CircuitState.CLOSED
        self.period = 0  # which stretch between two transitions we are in
        self.outcomes: list[Outcome] = []  # every outcome that counted, ever
        self.permits: list[ModelPermit] = []
        self.open_until = 0.0
        self.transitions: list[tuple[CircuitState, CircuitState]] = []
        self.rejections = 0

    # -- questions, answered from the raw lists
    def bucket(self, t: float) -> int:
        return math.floor(t / self.config.bucket_width)

    def in_window(self) -> list[Outcome]:
        buckets = round(self.config.window / self.config.bucket_width)
        newest = self.bucket(self.clock.monotonic())
        return [
            o
            for o in self.outcomes
            if o.period == self.period and self.bucket(o.at) > newest - buckets
        ]

    def this_period(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.period == self.period]

    def too_bad(self, outcomes: list[Outcome]) -> bool:
        calls = len(outcomes)
        failures = sum(o.failed for o in outcomes)
        slow = sum(o.slow for o in outcomes)
        return (
            failures / calls >= self.config.failure_rate_threshold
            or slow / calls >= self.config.slow_call_rate_threshold
        )

    def trial_slots_taken(self) -> int:
        return sum(1 for p in self.permits if p.period == self.period and not p.released)

    # -- actions
    def move(self, to_state: CircuitState) -> None:
        self.transitions.append((self.state, to_state))
        self.state = to_state
        self.period += 1
        if to_state is CircuitState.OPEN:
            self.open_until = self.clock.monotonic() + self.config.open_duration

    def current_state(self) -> CircuitState:
        if self.state is CircuitState.OPEN and self.clock.monotonic() >= self.open_until:
            self.move(CircuitState.HALF_OPEN)
        return self.state

    def acquire(self) -> ModelPermit | float:
        """A permit, or the retry_after of the rejection."""
        state = self.current_state()
        half_open_room = self.trial_slots_taken() < self.config.half_open_max_calls
        if state is CircuitState.CLOSED or (state is CircuitState.HALF_OPEN and half_open_room):
            permit = ModelPermit(self.period)
            self.permits.append(permit)
            return permit
        self.rejections += 1
        if state is CircuitState.OPEN:
            return self.open_until - self.clock.monotonic()
        return HALF_OPEN_RETRY_AFTER

    def report(self, permit: ModelPermit, *, failed: bool, duration: float) -> None:
        if permit.reported or permit.released:
            return
        permit.reported = True
        if permit.period != self.period:
            return
        slow = duration > self.config.slow_call_duration
        self.outcomes.append(Outcome(self.period, self.clock.monotonic(), failed, slow))
        if self.state is CircuitState.CLOSED:
            window = self.in_window()
            if len(window) >= self.config.minimum_calls and self.too_bad(window):
                self.move(CircuitState.OPEN)
        elif self.state is CircuitState.HALF_OPEN:
            trials = self.this_period()
            if len(trials) == self.config.half_open_max_calls:
                self.move(CircuitState.OPEN if self.too_bad(trials) else CircuitState.CLOSED)

    def release(self, permit: ModelPermit) -> None:
        if not (permit.reported or permit.released):
            permit.released = True


configs = st.builds(
    lambda buckets, width, **kw: BreakerConfig(window=buckets * width, bucket_width=width, **kw),
    buckets=st.integers(1, 4),
    width=st.sampled_from([0.5, 1.0]),
    minimum_calls=st.integers(1, 4),
    failure_rate_threshold=st.sampled_from([0.2, 0.5, 0.75, 1.0]),
    slow_call_rate_threshold=st.sampled_from([0.34, 0.5, 1.0]),
    slow_call_duration=st.just(SLOW_CALL_DURATION),
    open_duration=st.sampled_from([0.5, 1.0, 2.5]),
    half_open_max_calls=st.integers(1, 3),
)


durations = st.sampled_from([0.0, 0.5, SLOW_CALL_DURATION, 1.5, 3.0])


class Transitions:
    def __init__(self) -> None:
        self.seen: list[tuple[CircuitState, CircuitState]] = []
        self.rejections = 0

    def on_transition(self, name: str, from_state: CircuitState, to_state: CircuitState) -> None:
        assert name == "model"
        self.seen.append((from_state, to_state))

    def on_rejection(self, name: str) -> None:
        assert name == "model"
        self.rejections += 1


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1000.0)
        self.listener = Transitions()
        self.breaker: CircuitBreaker | None = None
        self.model: ReferenceBreaker | None = None
        self.in_flight: list[tuple[Permit, ModelPermit]] = []
        self.finished: list[tuple[Permit, ModelPermit]] = []

    @initialize(config=configs)
    def start(self, config: BreakerConfig) -> None:
        self.breaker = CircuitBreaker("model", config, clock=self.clock, listeners=[self.listener])
        self.model = ReferenceBreaker(config, self.clock)

    def both(self) -> tuple[CircuitBreaker, ReferenceBreaker]:
        assert self.breaker is not None
        assert self.model is not None
        return self.breaker, self.model

    @rule(seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.75, 3.0, 10.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def _acquire(self) -> tuple[Permit, ModelPermit] | None:
        breaker, model = self.both()
        expected = model.acquire()
        rejection: CircuitOpenError | None = None
        try:
            permit = breaker.acquire()
        except CircuitOpenError as rejected:
            rejection = rejected
        if rejection is not None:
            assert isinstance(expected, float), "breaker rejected, model admitted"
            assert rejection.retry_after == expected
            return None
        assert isinstance(expected, ModelPermit), "breaker admitted, model rejected"
        return permit, expected

    def _report(self, pair: tuple[Permit, ModelPermit], failed: bool, duration: float) -> None:
        _, model = self.both()
        permit, expected = pair
        if failed:
            permit.record_failure(duration)
        else:
            permit.record_success(duration)
        model.report(expected, failed=failed, duration=duration)

    @rule()
    def acquire(self) -> None:
        """Start a call and keep it in flight."""
        pair = self._acquire()
        if pair is not None:
            self.in_flight.append(pair)

    @rule(failed=st.booleans(), duration=durations)
    def call(self, failed: bool, duration: float) -> None:
        """A whole call: acquire, then report at once."""
        pair = self._acquire()
        if pair is not None:
            self._report(pair, failed, duration)

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 10), failed=st.booleans(), duration=durations)
    def finish(self, pick: int, failed: bool, duration: float) -> None:
        pair = self.in_flight.pop(pick % len(self.in_flight))
        self._report(pair, failed, duration)
        self.finished.append(pair)

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 10))
    def release(self, pick: int) -> None:
        pair = self.in_flight.pop(pick % len(self.in_flight))
        _, model = self.both()
        pair[0].release_without_outcome()
        model.release(pair[1])
        self.finished.append(pair)

    @precondition(lambda self: self.finished)
    @rule(pick=st.integers(0, 10), failed=st.booleans(), release=st.booleans())
    def report_again(self, pick: int, failed: bool, release: bool) -> None:
        """A second report on a finished permit must change nothing."""
        _, model = self.both()
        permit, expected = self.finished[pick % len(self.finished)]
        if release:
            permit.release_without_outcome()
            model.release(expected)
        else:
            self._report((permit, expected), failed, 0.0)

    @invariant()
    def agree(self) -> None:
        if self.breaker is None:
            return
        breaker, model = self.both()
        assert breaker.state is model.current_state()
        assert self.listener.seen == model.transitions
        assert self.listener.rejections == model.rejections


BreakerMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=80, deadline=None)
TestBreakerAgainstModel = BreakerMachine.TestCase
