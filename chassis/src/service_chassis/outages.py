"""Log a dependency's outage the way an operator wants to read it: a warning when it starts
(and for the next few failures), then a summary at growing intervals saying how long it has
lasted, and one INFO line when it ends, with its duration. Never a line per retry forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

FIRST_WARNINGS = 3
FIRST_SUMMARY_SECONDS = 60.0
MAX_SUMMARY_SECONDS = 3600.0


class OutageLog:
    def __init__(self, what: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._clock = clock
        self._started: float | None = None
        self._failures = 0
        self._next_summary = 0.0
        self._interval = FIRST_SUMMARY_SECONDS

    @property
    def ongoing(self) -> bool:
        return self._started is not None

    def failed(self, **fields: Any) -> None:
        """One more failed attempt; logged when the outage is new or a summary is due."""
        now = self._clock()
        if self._started is None:
            self._started, self._failures = now, 0
            self._next_summary, self._interval = now + FIRST_SUMMARY_SECONDS, FIRST_SUMMARY_SECONDS
        self._failures += 1
        lasted = now - self._started
        if self._failures <= FIRST_WARNINGS:
            log.warning(f"{self._what} failed", attempts=self._failures, **fields)
        elif now >= self._next_summary:
            log.warning(
                f"{self._what} still failing",
                failing_for_seconds=round(lasted),
                attempts=self._failures,
                **fields,
            )
            self._interval = min(self._interval * 2, MAX_SUMMARY_SECONDS)
            self._next_summary = now + self._interval

    def recovered(self, **fields: Any) -> None:
        """The dependency answered again; logged once if it had been failing."""
        if self._started is None:
            return
        lasted = self._clock() - self._started
        log.info(
            f"{self._what} works again",
            failed_for_seconds=round(lasted, 1),
            attempts=self._failures,
            **fields,
        )
        self._started = None
