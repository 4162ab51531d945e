"""Retry decisions: whether, and after how long, to try an outbound call again.

Pure: no I/O and no HTTP client. The client reports what happened to an attempt and gets back a
`RetryDecision`; it does the sleeping. Randomness and time are injectable.

Rules, in the order `RetryPolicy.decide` applies them:

1. The outcome must be retryable: a transport failure, or status 429, 502, 503 or 504.
2. The request must be safe to send again: an idempotent method (RFC 9110 section 9.2.2: GET,
   HEAD, OPTIONS, PUT, DELETE, TRACE) or one the caller marked idempotent (e.g. a POST with an
   idempotency key). Exception: a `CONNECT` failure means the request never left this process
   (connection refused, DNS, TLS handshake, connect or pool timeout), so any method may retry.
3. Attempts are capped (`max_attempts` counts the first one).
4. The delay is "full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"):
   uniform in [0, min(max_delay, base_delay * 2 ** (retry - 1))]. Full jitter spreads clients
   that failed together, which is what keeps a recovering downstream from a synchronized herd.
5. A `Retry-After` (seconds or HTTP-date) is honoured as a minimum. When it asks for more than
   `max_retry_after`, the call gives up rather than come back early against the server's word.
6. Never past the deadline: when the delay would use up the time left, give up now.
7. The downstream's retry budget must allow it (checked last, since asking spends a token).

Mapping httpx exceptions: `ConnectError`, `ConnectTimeout`, `PoolTimeout` -> CONNECT; other
`TimeoutException` -> TIMEOUT; other `TransportError` (read/write errors, a server that closed
the connection) -> CONNECTION.
"""

from __future__ import annotations

import math
import random as _random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final, Protocol

from ._window import SlidingWindow, bucket_count
from .clock import MONOTONIC, Clock
from .deadline import Deadline

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
_MAX_EXPONENT: Final = 64  # 2.0 ** 1024 overflows; any cap is reached long before this


class TransportFailure(StrEnum):
    """What went wrong when an attempt got no HTTP response."""

    CONNECT = "connect_error"  # nothing was sent: safe to retry whatever the method
    CONNECTION = "connection_error"  # the connection broke after sending
    TIMEOUT = "timeout"  # no response in time; the server may still have acted


class GiveUp(StrEnum):
    """Why a failed attempt is not retried."""

    NOT_RETRYABLE = "not_retryable"
    NOT_IDEMPOTENT = "not_idempotent"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    RETRY_AFTER_TOO_LONG = "retry_after_too_long"
    DEADLINE = "deadline"
    BUDGET_EXHAUSTED = "budget_exhausted"


class RetryListener(Protocol):
    """Told by the client each time it retries (e.g. `outbound_retries_total`)."""

    def on_retry(self, name: str, reason: str) -> None: ...


def is_idempotent(method: str, *, marked: bool = False) -> bool:
    """Whether a request may be sent twice; `marked`: the caller vouches for it."""
    return marked or method.upper() in IDEMPOTENT_METHODS


def retry_reason(
    *, status: int | None = None, failure: TransportFailure | None = None
) -> str | None:
    """The retry reason label for an attempt's outcome, or None when it is not retryable."""
    if failure is not None:
        return failure.value
    if status in RETRYABLE_STATUSES:
        return f"status_{status}"
    return None


def full_jitter_delay(
    retry: int,
    *,
    base_delay: float,
    max_delay: float,
    random: Callable[[], float] = _random.random,
) -> float:
    """Delay before retry number `retry` (1 for the first), drawn uniformly from
    [0, min(max_delay, base_delay * 2 ** (retry - 1)))."""
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    ceiling = min(max_delay, base_delay * 2.0 ** min(retry - 1, _MAX_EXPONENT))
    return ceiling * random()


_DELAY_SECONDS = re.compile(r"[0-9]+")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (RFC 9110 section 10.2.3).

    `delay-seconds` or an HTTP-date; a date is measured from `now` (wall-clock epoch seconds,
    default `time.time()`) and one in the past means 0. None when absent or malformed.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    wall = time.time() if now is None else now
    return max(0.0, when.timestamp() - wall)


class RetryBudget:
    """Caps retries to a fraction of requests per downstream (Finagle's RetryBudget, gRPC's
    retry throttling): when a downstream is failing everywhere, retries would multiply its load
    exactly when it can least take it.

    Over a sliding `window`, retries may reach `ratio` x requests plus a reserve of
    `min_retries_per_second` x window, so a quiet client can still retry a few times. Count each
    original request with `record_request()` (not the retries); `try_spend()` asks for one retry.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_retries_per_second: float = 3.0,
        window: float = 10.0,
        bucket_width: float = 1.0,
        clock: Clock = MONOTONIC,
    ) -> None:
        if not (math.isfinite(ratio) and ratio >= 0):
            raise ValueError(f"retry budget ratio must be >= 0, got {ratio!r}")
        if not (math.isfinite(min_retries_per_second) and min_retries_per_second >= 0):
            raise ValueError(f"min_retries_per_second must be >= 0, got {min_retries_per_second!r}")
        buckets = bucket_count(window, bucket_width, what="retry budget window")
        self._ratio = ratio
        self._reserve = min_retries_per_second * window
        self._clock = clock
        self._window = SlidingWindow(buckets=buckets, bucket_width=bucket_width, fields=2)

    def record_request(self) -> None:
        self._window.add(self._clock.monotonic(), (1, 0))

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (nothing taken) when it is used up."""
        now = self._clock.monotonic()
        requests, retries = self._window.totals(now)
        # The epsilon keeps float error (0.29 * 100 = 28.999...) from costing a whole retry.
        allowed = math.floor(self._ratio * requests + self._reserve + 1e-9)
        if retries >= allowed:
            return False
        self._window.add(now, (0, 1))
        return True


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """`reason`: the outcome's retry label (None if not retryable); `delay`: seconds to sleep
    before the next attempt; `give_up`: why not, None when retrying."""

    reason: str | None
    delay: float = 0.0
    give_up: GiveUp | None = None

    @property
    def retry(self) -> bool:
        return self.give_up is None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry settings for one downstream. Durations in seconds."""

    max_attempts: int = 3  # including the first attempt; 1 turns retries off
    base_delay: float = 0.1  # backoff ceiling of the first retry, doubling after each
    max_delay: float = 1.0  # backoff ceiling never grows past this
    max_retry_after: float = 10.0  # a longer Retry-After means give up, not retry early

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"max_attempts must be an integer, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (1: no retries), got {self.max_attempts}")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")

    def decide(
        self,
        *,
        attempt: int,
        method: str,
        status: int | None = None,
        failure: TransportFailure | None = None,
        idempotent: bool = False,
        retry_after: float | None = None,
        deadline: Deadline | None = None,
        budget: RetryBudget | None = None,
        random: Callable[[], float] = _random.random,
    ) -> RetryDecision:
        """Decide after attempt number `attempt` (1 for the first) ended with `status` or
        `failure`. `retry_after`: the parsed header, if any. Spends a budget token only when the
        answer is to retry."""
        reason = retry_reason(status=status, failure=failure)
        if reason is None:
            return RetryDecision(None, give_up=GiveUp.NOT_RETRYABLE)
        if failure is not TransportFailure.CONNECT and not is_idempotent(method, marked=idempotent):
            return RetryDecision(reason, give_up=GiveUp.NOT_IDEMPOTENT)
        if attempt >= self.max_attempts:
            return RetryDecision(reason, give_up=GiveUp.ATTEMPTS_EXHAUSTED)
        if retry_after is not None and retry_after > self.max_retry_after:
            return RetryDecision(reason, give_up=GiveUp.RETRY_AFTER_TOO_LONG)
        delay = full_jitter_delay(
            attempt, base_delay=self.base_delay, max_delay=self.max_delay, random=random
        )
        if retry_after is not None:
            delay = max(delay, retry_after)  # the server's word is a minimum
        if deadline is not None and delay >= deadline.remaining():
            return RetryDecision(reason, delay, GiveUp.DEADLINE)
        if budget is not None and not budget.try_spend():
            return RetryDecision(reason, delay, GiveUp.BUDGET_EXHAUSTED)
        return RetryDecision(reason, delay)
