"""Monotonic time source, injectable so time-based logic is tested without sleeping."""

from __future__ import annotations

import time
from typing import Final, Protocol


class Clock(Protocol):
    """Anything that tells monotonic time in seconds."""

    def monotonic(self) -> float: ...


class MonotonicClock:
    """The real clock: `time.monotonic()` never jumps with wall-clock adjustments."""

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (for tests)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back (advance by {seconds})")
        self._now += seconds


MONOTONIC: Final[Clock] = MonotonicClock()
