"""How a failed outbound call reaches the service's own caller: as problem details.

Each error is a `Problem`, so a route that lets it propagate answers RFC 9457 with no code of its
own. The downstream's body is never passed on (it may hold anything); its status, and the `type`
of its own problem details when it sent some, are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..problems import Problem


class DownstreamError(Problem):
    """An outbound call failed after everything the client may do. `outcome` names how, as in
    the `outcome` attribute of the call's span."""

    outcome: str = "error"

    def __init__(
        self,
        detail: str,
        *,
        downstream: str,
        attempts: int,
        extensions: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            detail,
            extensions={"downstream": downstream, "attempts": attempts, **(extensions or {})},
            headers=headers,
        )
        self.downstream = downstream
        self.attempts = attempts


class DownstreamNotConfigured(DownstreamError):
    """An optional downstream whose URL is not set: its calls answer this until it is."""

    status = 503
    type = "urn:problem:downstream-not-configured"
    title = "Downstream not configured"
    outcome = "not_configured"

    def __init__(self, *, downstream: str, variable: str) -> None:
        super().__init__(
            f"The downstream {downstream} has no URL: set {variable} to give it one.",
            downstream=downstream,
            attempts=0,
            extensions={"setting": variable},
        )


class DownstreamCircuitOpen(DownstreamError):
    status = 503
    type = "urn:problem:downstream-circuit-open"
    title = "Downstream circuit open"
    outcome = "circuit_open"

    def __init__(self, *, downstream: str, attempts: int, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))  # Retry-After takes whole seconds
        super().__init__(
            f"Calls to {downstream} are paused after repeated failures; retry in {seconds} s.",
            downstream=downstream,
            attempts=attempts,
            headers={"Retry-After": str(seconds)},
        )


class DownstreamBusy(DownstreamError):
    status = 503
    type = "urn:problem:downstream-busy"
    title = "Downstream busy"
    outcome = "bulkhead_full"

    def __init__(self, *, downstream: str, max_concurrent: int) -> None:
        super().__init__(
            f"Too many calls to {downstream} are in flight ({max_concurrent}); try again soon.",
            downstream=downstream,
            attempts=0,
            headers={"Retry-After": "1"},
        )


class DownstreamTimeout(DownstreamError):
    status = 504
    type = "urn:problem:downstream-timeout"
    title = "Downstream timed out"
    outcome = "timeout"

    def __init__(self, *, downstream: str, attempts: int, deadline: bool) -> None:
        super().__init__(
            f"{downstream} did not answer within the time allowed for this request."
            if deadline
            else f"{downstream} did not answer in time.",
            downstream=downstream,
            attempts=attempts,
        )
        if deadline:
            self.outcome = "deadline_exceeded"


class DownstreamUnavailable(DownstreamError):
    status = 502
    type = "urn:problem:downstream-unavailable"
    title = "Downstream unavailable"
    outcome = "unavailable"

    @classmethod
    def unreachable(cls, *, downstream: str, attempts: int, error: str) -> DownstreamUnavailable:
        """No answer at all: `error` is the exception's class name, never its message."""
        return cls(
            f"{downstream} could not be reached ({error}).",
            downstream=downstream,
            attempts=attempts,
            extensions={"error_type": error},
        )

    @classmethod
    def answered(
        cls, *, downstream: str, attempts: int, status: int, problem_type: str | None
    ) -> DownstreamUnavailable:
        """It answered with an error status (after any retries)."""
        extensions: dict[str, Any] = {"downstream_status": status}
        if problem_type is not None:
            extensions["downstream_type"] = problem_type
        error = cls(
            f"{downstream} answered {status}.",
            downstream=downstream,
            attempts=attempts,
            extensions=extensions,
        )
        error.outcome = "downstream_error"
        return error


class UnsendableJSON(Problem):
    """The data to send is not JSON (RFC 8259): NaN or an infinity, a lone surrogate, ..."""

    status = 422
    type = "urn:problem:not-json"
    title = "Not JSON"

    def __init__(self, reason: str) -> None:
        super().__init__(
            "The request holds a value JSON cannot carry (NaN, an infinity or a lone "
            "surrogate), so it cannot be sent on.",
            extensions={"reason": reason},
        )
