"""Circuit breaker modelled on resilience4j / Polly's advanced breaker.

CLOSED: every call is let through and its outcome counted in a sliding time window. Once the
window holds at least `minimum_calls` outcomes and the failure rate or the slow-call rate reaches
its threshold, the breaker OPENs.

OPEN: every call is rejected with `CircuitOpenError` (carrying `retry_after`) for `open_duration`;
then the breaker is HALF_OPEN. The move happens lazily, on the next `state` read or `acquire()`.

HALF_OPEN: at most `half_open_max_calls` trial calls are let through, the rest rejected. When
that many trials have reported an outcome, the breaker CLOSEs if their failure rate and slow-call
rate are both under the thresholds, else it OPENs again. A trial released without an outcome
(cancelled, or ended by an error that says nothing about the downstream) frees its slot.

Every transition starts a new period with empty counts; an outcome reported by a call admitted
in an earlier period is dropped, so a slow call from before the breaker opened can neither count
as a trial nor trip a freshly closed breaker.

Not thread-safe: use one breaker from one event loop. No method awaits, so asyncio tasks cannot
interleave inside one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType
from typing import Final, Protocol, Self

from ._window import SlidingWindow, bucket_count
from .clock import MONOTONIC, Clock

# While the trials of a half-open period run, nobody knows when the breaker will admit calls
# again; a short hint keeps clients that honour it from either hammering or waiting long.
HALF_OPEN_RETRY_AFTER: Final = 1.0


class CircuitState(IntEnum):
    """Breaker states; the values are those of the `circuit_breaker_state` gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        """Metric label and log value: `closed`, `open`, `half_open`."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Breaker settings. Durations are in seconds; rates are fractions in (0, 1]."""

    window: float = 30.0  # sliding window of outcomes considered while closed
    bucket_width: float = 1.0  # granularity of the window; `window` must be a multiple
    minimum_calls: int = 20  # outcomes in the window before the breaker may open
    failure_rate_threshold: float = 0.5  # open when failures / calls >= this
    slow_call_duration: float = 2.0  # a call taking longer than this is slow (inf: never)
    slow_call_rate_threshold: float = 1.0  # open when slow calls / calls >= this
    open_duration: float = 15.0  # how long to reject before letting trials through
    half_open_max_calls: int = 3  # trial calls in half-open; all must finish before deciding

    def __post_init__(self) -> None:
        bucket_count(self.window, self.bucket_width, what="breaker window")
        _positive_int("minimum_calls", self.minimum_calls)
        _positive_int("half_open_max_calls", self.half_open_max_calls)
        _rate("failure_rate_threshold", self.failure_rate_threshold)
        _rate("slow_call_rate_threshold", self.slow_call_rate_threshold)
        if not self.slow_call_duration > 0:  # also rejects NaN; inf turns slow calls off
            raise ValueError(
                f"slow_call_duration must be > 0 seconds (inf disables it), "
                f"got {self.slow_call_duration!r}"
            )
        if not (math.isfinite(self.open_duration) and self.open_duration > 0):
            raise ValueError(f"open_duration must be > 0 seconds, got {self.open_duration!r}")


def _positive_int(field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{field} must be >= 1, got {value!r}")


def _rate(field: str, value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{field} must be a fraction in (0, 1], got {value!r}")


class CircuitOpenError(Exception):
    """The breaker refused the call. `retry_after`: seconds until it may admit calls again."""

    def __init__(self, name: str, state: CircuitState, retry_after: float) -> None:
        super().__init__(
            f"circuit breaker {name!r} is {state.label}; retry after {retry_after:.3f}s"
        )
        self.name = name
        self.state = state
        self.retry_after = retry_after


class BreakerListener(Protocol):
    """Hook for metrics, logs and spans; the breaker imports none of them. Must not raise."""

    def on_transition(
        self, name: str, from_state: CircuitState, to_state: CircuitState
    ) -> None: ...

    def on_rejection(self, name: str) -> None: ...


class Permit:
    """Leave to make one call. Report exactly one outcome, or release it.

    The first report wins; later ones are ignored, so `finally: permit.release_without_outcome()`
    is safe after recording. As a context manager, leaving the block without a report releases
    the permit (an exception is not assumed to be the downstream's fault).
    """

    __slots__ = ("_breaker", "_done", "_generation", "_started")

    def __init__(self, breaker: CircuitBreaker, generation: int, started: float) -> None:
        self._breaker = breaker
        self._generation = generation
        self._started = started
        self._done = False

    def record_success(self, duration: float | None = None) -> None:
        """The call succeeded; `duration` defaults to the time since `acquire()`."""
        self._finish(failed=False, duration=duration)

    def record_failure(self, duration: float | None = None) -> None:
        """The call failed in a way that counts against the downstream."""
        self._finish(failed=True, duration=duration)

    def release_without_outcome(self) -> None:
        """The call ended with nothing to say about the downstream (e.g. it was cancelled)."""
        if not self._done:
            self._done = True
            self._breaker._release(self._generation)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release_without_outcome()

    def _finish(self, *, failed: bool, duration: float | None) -> None:
        if self._done:
            return
        self._done = True
        if duration is None:
            duration = self._breaker._clock.monotonic() - self._started
        self._breaker._record(self._generation, failed=failed, duration=duration)


class CircuitBreaker:
    """One breaker per downstream. `acquire()` before each call, then report on the permit."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = MONOTONIC,
        listeners: Iterable[BreakerListener] = (),
    ) -> None:
        self.name = name
        self.config = config if config is not None else BreakerConfig()
        self._clock = clock
        self._listeners = tuple(listeners)
        self._state = CircuitState.CLOSED
        # Bumped on every transition; a permit remembers the period that admitted it.
        self._generation = 0
        self._window = SlidingWindow(  # closed period: calls, failures, slow calls
            buckets=bucket_count(self.config.window, self.config.bucket_width),
            bucket_width=self.config.bucket_width,
            fields=3,
        )
        self._open_until = 0.0
        self._trial_slots = 0  # half-open permits handed out and not released
        self._trial_calls = 0  # half-open trials that reported an outcome
        self._trial_failures = 0
        self._trial_slow = 0

    @property
    def state(self) -> CircuitState:
        """Current state; an OPEN breaker whose open period elapsed turns HALF_OPEN here."""
        self._refresh(self._clock.monotonic())
        return self._state

    def acquire(self) -> Permit:
        """Return a permit for one call, or raise `CircuitOpenError`."""
        now = self._clock.monotonic()
        self._refresh(now)
        if self._state is CircuitState.CLOSED:
            return Permit(self, self._generation, now)
        if (
            self._state is CircuitState.HALF_OPEN
            and self._trial_slots < self.config.half_open_max_calls
        ):
            self._trial_slots += 1
            return Permit(self, self._generation, now)
        open_left = self._open_until - now
        retry_after = open_left if self._state is CircuitState.OPEN else HALF_OPEN_RETRY_AFTER
        for listener in self._listeners:
            listener.on_rejection(self.name)
        raise CircuitOpenError(self.name, self._state, retry_after)

    def _record(self, generation: int, *, failed: bool, duration: float) -> None:
        if generation != self._generation:
            return  # admitted in an earlier period: says nothing about this one
        now = self._clock.monotonic()
        slow = duration > self.config.slow_call_duration
        if self._state is CircuitState.CLOSED:
            self._window.add(now, (1, int(failed), int(slow)))
            calls, failures, slow_calls = self._window.totals(now)
            if calls >= self.config.minimum_calls and self._too_bad(calls, failures, slow_calls):
                self._transition(CircuitState.OPEN, now)
        elif self._state is CircuitState.HALF_OPEN:
            self._trial_calls += 1
            self._trial_failures += failed
            self._trial_slow += slow
            if self._trial_calls >= self.config.half_open_max_calls:
                bad = self._too_bad(self._trial_calls, self._trial_failures, self._trial_slow)
                self._transition(CircuitState.OPEN if bad else CircuitState.CLOSED, now)

    def _release(self, generation: int) -> None:
        if generation == self._generation and self._state is CircuitState.HALF_OPEN:
            self._trial_slots -= 1

    def _too_bad(self, calls: int, failures: int, slow_calls: int) -> bool:
        return (
            failures / calls >= self.config.failure_rate_threshold
            or slow_calls / calls >= self.config.slow_call_rate_threshold
        )

    def _refresh(self, now: float) -> None:
        if self._state is CircuitState.OPEN and now >= self._open_until:
            self._transition(CircuitState.HALF_OPEN, now)

    def _transition(self, to_state: CircuitState, now: float) -> None:
        from_state = self._state
        self._state = to_state
        self._generation += 1
        self._window.clear()
        self._trial_slots = self._trial_calls = self._trial_failures = self._trial_slow = 0
        if to_state is CircuitState.OPEN:
            self._open_until = now + self.config.open_duration
        # Notify last, with the breaker consistent, so a listener may read `state`.
        for listener in self._listeners:
            listener.on_transition(self.name, from_state, to_state)
