"""Request deadlines: one absolute expiry that every outbound call of a request shares.

httpx timeouts apply per operation (connect, read, ...), so a slow trickle or a few retries can
run far past what the caller is still waiting for. A `Deadline` is an absolute point on the
monotonic clock; each attempt gets `remaining()` as its timeout and retries stop when it is used
up.

Propagation: an incoming request may carry `X-Request-Timeout: <seconds>` (a non-negative
decimal, e.g. `2.5`): how long its caller will still wait. It is relative on purpose: hosts'
clocks disagree, and a relative budget only loses the network transit time, which errs on the
safe side. There is no standard HTTP header for this (gRPC has `grpc-timeout`, Envoy has
`x-envoy-expected-rq-timeout-ms`); seconds match `Retry-After` and the service's settings. The
service caps the value with its own maximum, uses its default when the header is absent or
malformed, and sends the remaining time on outbound calls so the whole chain shares one budget.

The current request's deadline lives in a contextvar, so code deep in a call stack (and tasks
spawned from the request) sees it without threading it through every signature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Final

from .clock import MONOTONIC, Clock

DEADLINE_HEADER: Final = "X-Request-Timeout"
DEADLINE_HEADER_KEY: Final = DEADLINE_HEADER.lower().encode()  # as ASGI spells header names
_HEADER_KEY: Final = DEADLINE_HEADER_KEY

# Plain decimal seconds only: no sign, exponent, "inf" or "nan" (all of which float() accepts).
_SECONDS = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*")


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """An absolute expiry on `clock`. Ordered by expiry, so `min(a, b)` is the earlier one."""

    expires_at: float
    clock: Clock = field(default=MONOTONIC, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, *, clock: Clock = MONOTONIC) -> Deadline:
        """The deadline `seconds` from now."""
        if not math.isfinite(seconds):
            raise ValueError(f"a deadline needs a finite number of seconds, got {seconds!r}")
        return cls(clock.monotonic() + seconds, clock)

    @classmethod
    def from_header(
        cls,
        value: str | None,
        *,
        default: float,
        maximum: float | None = None,
        clock: Clock = MONOTONIC,
    ) -> Deadline:
        """The deadline for an incoming request: the header's seconds, else `default`; at most
        `maximum` (the service's own limit: a caller must not buy unlimited work)."""
        seconds = parse_timeout(value)
        if seconds is None:
            seconds = default
        if maximum is not None:
            seconds = min(seconds, maximum)
        return cls.after(seconds, clock=clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - self.clock.monotonic())

    @property
    def expired(self) -> bool:
        return self.clock.monotonic() >= self.expires_at

    def earliest(self, other: Deadline | None) -> Deadline:
        """The tighter of the two (`other` None means no other deadline)."""
        return self if other is None or self.expires_at <= other.expires_at else other

    def header_value(self) -> str:
        """Remaining time for the outbound header, rounded down to the millisecond so the
        downstream never believes it has more time than we do."""
        return format_timeout(self.remaining())


def parse_timeout(value: str | None) -> float | None:
    """Seconds from an `X-Request-Timeout` value, or None when absent or malformed."""
    if value is None:
        return None
    match = _SECONDS.fullmatch(value)
    if match is None:
        return None
    seconds = float(match.group(1))
    return seconds if math.isfinite(seconds) else None  # 400 nines overflow to inf


def format_timeout(seconds: float) -> str:
    """Seconds as an `X-Request-Timeout` value: non-negative, millisecond precision, floored."""
    millis = math.floor(max(0.0, seconds) * 1000)
    return f"{millis // 1000}.{millis % 1000:03d}"


current_deadline: ContextVar[Deadline | None] = ContextVar("current_deadline", default=None)


def get_deadline() -> Deadline | None:
    """The current request's deadline, if any."""
    return current_deadline.get()


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Run a block under `deadline`, narrowed by any deadline already in force (an inner scope
    can only shorten the time left, never extend it). Yields the effective deadline."""
    outer = current_deadline.get()
    effective = outer if deadline is None else deadline.earliest(outer)
    token = current_deadline.set(effective)
    try:
        yield effective
    finally:
        current_deadline.reset(token)


def enter_request_deadline(
    headers: Iterable[tuple[bytes, bytes]],
) -> Token[Deadline | None] | None:
    """Make an incoming request's `X-Request-Timeout` the current deadline.

    `headers` are the raw ASGI header pairs; one pass over them, nothing else when the header is
    absent, so the request path pays next to nothing. Returns the token that `current_deadline.
    reset()` takes once the request is over, or None (nothing set) when the header is absent or
    malformed. No cap is applied here: outbound calls use the smaller of their own timeout and
    what is left, so a caller asking for more time than that cannot buy more work.
    """
    for name, value in headers:
        if name == _HEADER_KEY:
            return enter_deadline(value)
    return None


def enter_deadline(header: bytes) -> Token[Deadline | None] | None:
    """``enter_request_deadline`` for the value of the header, found by the caller."""
    seconds = parse_timeout(header.decode("latin-1"))
    if seconds is None:
        return None
    return current_deadline.set(Deadline.after(seconds).earliest(current_deadline.get()))
