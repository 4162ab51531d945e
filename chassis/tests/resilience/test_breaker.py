from __future__ import annotations

import math

import pytest

from service_chassis.resilience.breaker import (
    HALF_OPEN_RETRY_AFTER,
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
)
from service_chassis.resilience.clock import ManualClock


class Recorder:
    def __init__(self) -> None:
        self.transitions: list[tuple[str, CircuitState, CircuitState]] = []
        self.rejections: list[str] = []

    def on_transition(self, name: str, from_state: CircuitState, to_state: CircuitState) -> None:
        self.transitions.append((name, from_state, to_state))

    def on_rejection(self, name: str) -> None:
        self.rejections.append(name)


def make(**overrides: float) -> tuple[CircuitBreaker, ManualClock, Recorder]:
    settings: dict[str, float] = {
        "window": 10.0,
        "minimum_calls": 4,
        "failure_rate_threshold": 0.5,
        "slow_call_duration": 1.0,
        "slow_call_rate_threshold": 1.0,
        "open_duration": 15.0,
        "half_open_max_calls": 3,
    }
    settings.update(overrides)
    config = BreakerConfig(**settings)  # type: ignore[arg-type]
    clock = ManualClock(100.0)
    recorder = Recorder()
    return CircuitBreaker("downstream", config, clock=clock, listeners=[recorder]), clock, recorder


def state(breaker: CircuitBreaker) -> CircuitState:
    # A call, not the property: mypy would keep a narrowed `breaker.state` across calls.
    return breaker.state


def succeed(breaker: CircuitBreaker, duration: float = 0.1) -> None:
    breaker.acquire().record_success(duration)


def fail(breaker: CircuitBreaker, duration: float = 0.1) -> None:
    breaker.acquire().record_failure(duration)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.minimum_calls):
        fail(breaker)
    assert state(breaker) is CircuitState.OPEN


def test_defaults() -> None:
    config = BreakerConfig()
    assert (config.window, config.bucket_width, config.minimum_calls) == (30.0, 1.0, 20)
    assert (config.failure_rate_threshold, config.slow_call_rate_threshold) == (0.5, 1.0)
    assert (config.slow_call_duration, config.open_duration) == (2.0, 15.0)
    assert config.half_open_max_calls == 3


def test_state_values_match_the_gauge() -> None:
    assert [(s.label, int(s)) for s in CircuitState] == [
        ("closed", 0),
        ("open", 1),
        ("half_open", 2),
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window", 0.0, "breaker window must be a positive"),
        ("window", 2.5, "whole multiple of its bucket width"),
        ("window", math.inf, "breaker window must be a positive"),
        ("bucket_width", 0.0, "bucket width must be a positive"),
        ("minimum_calls", 0, "minimum_calls must be >= 1"),
        ("half_open_max_calls", 0, "half_open_max_calls must be >= 1"),
        ("failure_rate_threshold", 0.0, "failure_rate_threshold must be a fraction in (0, 1]"),
        ("failure_rate_threshold", 1.5, "failure_rate_threshold must be a fraction in (0, 1]"),
        ("slow_call_rate_threshold", -0.1, "slow_call_rate_threshold must be a fraction"),
        ("slow_call_duration", 0.0, "slow_call_duration must be > 0"),
        ("slow_call_duration", math.nan, "slow_call_duration must be > 0"),
        ("open_duration", 0.0, "open_duration must be > 0"),
        ("open_duration", math.inf, "open_duration must be > 0"),
    ],
)
def test_config_validation(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BreakerConfig(**{field: value})  # type: ignore[arg-type]


def test_config_rejects_non_integer_counts() -> None:
    with pytest.raises(TypeError, match="minimum_calls must be an integer"):
        BreakerConfig(minimum_calls=2.5)  # type: ignore[arg-type]


def test_does_not_open_before_minimum_calls() -> None:
    breaker, _, recorder = make(minimum_calls=5)
    for _ in range(4):
        fail(breaker)
    assert state(breaker) is CircuitState.CLOSED
    fail(breaker)
    assert state(breaker) is CircuitState.OPEN
    assert recorder.transitions == [("downstream", CircuitState.CLOSED, CircuitState.OPEN)]


def test_opens_at_the_failure_rate_threshold() -> None:
    breaker, _, _ = make()
    succeed(breaker)
    succeed(breaker)
    fail(breaker)
    assert state(breaker) is CircuitState.CLOSED  # 3 calls < minimum_calls
    fail(breaker)  # 2 / 4 = 0.5 reaches the threshold
    assert state(breaker) is CircuitState.OPEN


def test_stays_closed_under_the_threshold() -> None:
    breaker, _, _ = make()
    for _ in range(30):
        succeed(breaker)
        succeed(breaker)
        fail(breaker)  # 1 in 3 failures < 0.5
    assert state(breaker) is CircuitState.CLOSED


def test_old_failures_age_out_of_the_window() -> None:
    breaker, clock, _ = make(window=10.0, minimum_calls=4)
    for _ in range(3):
        fail(breaker)  # at t=100.0, bucket 100
    clock.advance(9.9)  # bucket 109: buckets 100..109 are still in the window
    fail(breaker)
    assert state(breaker) is CircuitState.OPEN

    breaker, clock, _ = make(window=10.0, minimum_calls=4)
    for _ in range(3):
        fail(breaker)
    clock.advance(10.0)  # bucket 110: bucket 100 has left the window
    fail(breaker)
    assert state(breaker) is CircuitState.CLOSED
    for _ in range(3):
        fail(breaker)
    assert state(breaker) is CircuitState.OPEN


def test_slow_calls_open_the_breaker() -> None:
    breaker, _, _ = make(minimum_calls=2, slow_call_rate_threshold=0.5, slow_call_duration=1.0)
    succeed(breaker, duration=1.0)  # exactly the limit is not slow
    succeed(breaker, duration=0.2)
    assert state(breaker) is CircuitState.CLOSED
    succeed(breaker, duration=1.01)
    succeed(breaker, duration=5.0)  # 2 slow of 4 = 0.5
    assert state(breaker) is CircuitState.OPEN


def test_slow_duration_defaults_to_time_since_acquire() -> None:
    breaker, clock, _ = make(minimum_calls=1, slow_call_rate_threshold=1.0, slow_call_duration=1.0)
    permit = breaker.acquire()
    clock.advance(1.5)
    permit.record_success()
    assert state(breaker) is CircuitState.OPEN


def test_infinite_slow_call_duration_disables_slow_calls() -> None:
    breaker, _, _ = make(minimum_calls=1, slow_call_duration=math.inf)
    succeed(breaker, duration=1e9)
    assert state(breaker) is CircuitState.CLOSED


def test_rejection_carries_retry_after_and_is_reported() -> None:
    breaker, clock, recorder = make(open_duration=15.0)
    trip(breaker)
    clock.advance(5.0)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == pytest.approx(10.0)
    assert caught.value.state is CircuitState.OPEN
    assert caught.value.name == "downstream"
    assert "retry after 10.000s" in str(caught.value)
    assert recorder.rejections == ["downstream"]


def test_moves_to_half_open_lazily_after_the_open_duration() -> None:
    breaker, clock, recorder = make(open_duration=15.0)
    trip(breaker)
    clock.advance(14.999)
    assert state(breaker) is CircuitState.OPEN
    clock.advance(0.001)
    assert state(breaker) is CircuitState.HALF_OPEN
    assert recorder.transitions[-1] == ("downstream", CircuitState.OPEN, CircuitState.HALF_OPEN)


def half_open(**overrides: float) -> tuple[CircuitBreaker, ManualClock, Recorder]:
    breaker, clock, recorder = make(**overrides)
    trip(breaker)
    clock.advance(breaker.config.open_duration)
    assert state(breaker) is CircuitState.HALF_OPEN
    return breaker, clock, recorder


def test_only_half_open_max_calls_trials_pass() -> None:
    breaker, _, recorder = half_open(half_open_max_calls=3)
    permits = [breaker.acquire() for _ in range(3)]
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.state is CircuitState.HALF_OPEN
    assert caught.value.retry_after == HALF_OPEN_RETRY_AFTER
    assert recorder.rejections == ["downstream"]
    assert len(permits) == 3


def test_successful_trials_close_it_with_a_fresh_window() -> None:
    breaker, _, recorder = half_open(half_open_max_calls=3)
    permits = [breaker.acquire() for _ in range(3)]
    permits[0].record_success()
    permits[1].record_success()
    assert state(breaker) is CircuitState.HALF_OPEN  # waits for every trial
    permits[2].record_success()
    assert state(breaker) is CircuitState.CLOSED
    assert recorder.transitions[-1] == ("downstream", CircuitState.HALF_OPEN, CircuitState.CLOSED)
    fail(breaker)  # the failures from before opening do not count any more
    assert state(breaker) is CircuitState.CLOSED


def test_trials_under_the_threshold_close_it() -> None:
    breaker, _, _ = half_open(half_open_max_calls=3, failure_rate_threshold=0.5)
    permits = [breaker.acquire() for _ in range(3)]
    permits[0].record_failure()  # 1 / 3 < 0.5
    permits[1].record_success()
    permits[2].record_success()
    assert state(breaker) is CircuitState.CLOSED


def test_failing_trials_reopen_it_for_a_full_open_duration() -> None:
    breaker, clock, recorder = half_open(half_open_max_calls=3, failure_rate_threshold=0.5)
    permits = [breaker.acquire() for _ in range(3)]
    permits[0].record_failure()
    permits[1].record_success()
    permits[2].record_failure()  # 2 / 3 >= 0.5
    assert state(breaker) is CircuitState.OPEN
    assert recorder.transitions[-1] == ("downstream", CircuitState.HALF_OPEN, CircuitState.OPEN)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == pytest.approx(breaker.config.open_duration)
    clock.advance(breaker.config.open_duration)
    assert state(breaker) is CircuitState.HALF_OPEN


def test_slow_trials_reopen_it() -> None:
    breaker, _, _ = half_open(half_open_max_calls=2, slow_call_rate_threshold=0.5)
    first, second = breaker.acquire(), breaker.acquire()
    first.record_success(duration=0.1)
    second.record_success(duration=breaker.config.slow_call_duration + 1)
    assert state(breaker) is CircuitState.OPEN


def test_released_permits_free_half_open_slots() -> None:
    breaker, _, _ = half_open(half_open_max_calls=2)
    first = breaker.acquire()
    second = breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    second.release_without_outcome()  # e.g. the call was cancelled
    third = breaker.acquire()
    first.record_success()
    third.record_success()
    assert state(breaker) is CircuitState.CLOSED


def test_context_manager_releases_a_permit_without_an_outcome() -> None:
    breaker, _, _ = half_open(half_open_max_calls=1)
    with pytest.raises(RuntimeError), breaker.acquire():
        raise RuntimeError("cancelled, or our own bug")
    with breaker.acquire() as permit:  # the slot is free again
        permit.record_success()
    assert state(breaker) is CircuitState.CLOSED


def test_only_the_first_report_of_a_permit_counts() -> None:
    breaker, _, _ = make(minimum_calls=2, failure_rate_threshold=1.0)
    permit = breaker.acquire()
    permit.record_failure()
    permit.record_failure()
    permit.release_without_outcome()
    assert state(breaker) is CircuitState.CLOSED  # one failure, not two
    fail(breaker)
    assert state(breaker) is CircuitState.OPEN


def test_outcomes_from_an_earlier_period_are_ignored() -> None:
    breaker, clock, _ = make(half_open_max_calls=1)
    straggler = breaker.acquire()  # admitted while closed
    trip(breaker)
    clock.advance(breaker.config.open_duration)
    assert state(breaker) is CircuitState.HALF_OPEN
    straggler.record_failure()  # not a trial: must neither reopen nor use up the trial
    straggler.release_without_outcome()
    assert state(breaker) is CircuitState.HALF_OPEN
    breaker.acquire().record_success()
    assert state(breaker) is CircuitState.CLOSED


def test_a_breaker_without_listeners_works() -> None:
    breaker = CircuitBreaker("bare", BreakerConfig(minimum_calls=1), clock=ManualClock())
    fail(breaker)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
