"""The resilient client of one downstream: every call has a deadline, safe retries, a circuit
breaker and a bulkhead, and says what happened in its span, metrics and logs.

Layers, outermost first:

1. bulkhead: at most `max_concurrent` calls in flight; one more waits a bounded time (never past
   the incoming request's deadline), then fails fast with 503;
2. deadline: the call's own timeout, shortened by the incoming request's deadline; no attempt
   starts after it and a running attempt is abandoned when it passes (504);
3. retry: idempotent requests only (or ones marked so, e.g. with an `Idempotency-Key`), on
   connection errors, timeouts, 429, 502, 503 and 504, with full-jitter backoff, `Retry-After`
   honoured, bounded attempts and a per-downstream retry budget;
4. circuit breaker: each attempt asks it first; while it is open, calls fail at once with 503
   and `Retry-After`, without touching the downstream;
5. the attempt itself: httpx with its per-operation timeouts (connect, read, write, pool), a
   client span and an `http_client_request_duration_seconds` observation (outbound.py).

Tracing: the logical call is one INTERNAL span, `<name> <METHOD>` (e.g. `downstream GET`),
whose children are the attempts' CLIENT spans. It carries `outcome` (`success`,
`client_error` for a 4xx answer, `downstream_error`, `unavailable`, `timeout`,
`deadline_exceeded`, `circuit_open`, `bulkhead_full`), `retry.count` and the final
`http.response.status_code`, and events for each retry, breaker transition and rejection.
Retried attempts carry `http.request.resend_count`.

What counts against the downstream in the breaker: a 5xx or 429 answer, a connection error, an
attempt that hit its own (httpx) timeout, and an attempt abandoned at the deadline after it had
already taken longer than a slow call. An attempt the deadline cut short sooner says nothing
about the downstream and is not counted: a caller sending tiny deadlines (or a retry left with
a sliver of time) must not open the breaker for everyone else. Slow successes count as slow
calls.
"""

from __future__ import annotations

import asyncio
import json as stdlib_json
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict, Unpack

import httpx
import orjson
import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from .breaker import CircuitBreaker, CircuitOpenError, CircuitState, Permit
from .bulkhead import Bulkhead, BulkheadFullError
from .deadline import DEADLINE_HEADER, Deadline, current_deadline, format_timeout
from .errors import (
    DownstreamBusy,
    DownstreamCircuitOpen,
    DownstreamError,
    DownstreamNotConfigured,
    DownstreamTimeout,
    DownstreamUnavailable,
    UnsendableJSON,
)
from .retry import RetryBudget, RetryListener, RetryPolicy, TransportFailure, parse_retry_after

log = structlog.get_logger(__name__)

# The httpx request extension that tells the attempt span how many times the request was resent.
RESEND_COUNT: Final = "resend_count"
IDEMPOTENCY_KEY: Final = "idempotency-key"
_DEADLINE_KEY: Final = DEADLINE_HEADER.lower()
PROBLEM_JSON: Final = "application/problem+json"
_MAX_PROBLEM_BYTES: Final = 65_536  # a larger "problem" is not worth parsing for its type
_MAX_TYPE_CHARS: Final = 512

Fallback = Callable[[DownstreamError], Awaitable[httpx.Response]]


class CallOptions(TypedDict, total=False):
    """What `ResilientClient.request` takes besides the method and URL."""

    headers: Mapping[str, str] | None
    params: Mapping[str, str] | None
    json: Any
    content: bytes | str | None
    idempotent: bool
    fallback: Fallback | None


def strict_json(value: Any) -> bytes:
    """``value`` as JSON text in UTF-8, or ``UnsendableJSON`` when JSON cannot carry it
    (NaN and infinities, lone surrogates, values of other types)."""
    try:
        return stdlib_json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as error:
        raise UnsendableJSON(type(error).__name__) from None


def _exact(base_url: httpx.URL) -> str:
    """The downstream's URL as configured: httpx merges "" with a base URL plus a slash
    ("/events" becomes "/events/"), which many servers redirect or refuse."""
    return str(base_url).rstrip("/")


def transport_failure(error: httpx.TransportError) -> TransportFailure:
    """Classify an httpx error as retry.py expects (see its docstring)."""
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransportFailure.CONNECT
    if isinstance(error, httpx.TimeoutException):
        return TransportFailure.TIMEOUT
    return TransportFailure.CONNECTION


def problem_type(response: httpx.Response) -> str | None:
    """The `type` of a downstream's problem details, if it sent some; nothing else of it."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith(PROBLEM_JSON) or len(response.content) > _MAX_PROBLEM_BYTES:
        return None
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    value = document.get("type") if isinstance(document, dict) else None
    return value if isinstance(value, str) and len(value) <= _MAX_TYPE_CHARS else None


class BreakerObserver:
    """Logs each breaker transition once and marks it on the span of the call that caused it."""

    def on_transition(self, name: str, from_state: CircuitState, to_state: CircuitState) -> None:
        emit = log.warning if to_state is CircuitState.OPEN else log.info
        emit(
            f"circuit breaker {to_state.label}",
            breaker=name,
            from_state=from_state.label,
            to_state=to_state.label,
        )
        trace.get_current_span().add_event(
            "circuit_breaker.transition",
            {
                "circuit_breaker.name": name,
                "circuit_breaker.from_state": from_state.label,
                "circuit_breaker.to_state": to_state.label,
            },
        )

    def on_rejection(self, name: str) -> None:
        return  # the client adds the event itself, with the state and the retry-after hint


@dataclass
class _Call:
    """What one logical call has done so far."""

    method: str
    idempotent: bool
    deadline: Deadline
    attempts: int = 0


class ResilientClient:
    """Calls one downstream through bulkhead, deadline, retry and circuit breaker.

    `http` returns the httpx client made by outbound.build_client; it is looked up per call.
    Requests are buffered: the body is read within the attempt, so the deadline covers it.
    `missing_url_variable` marks an optional downstream whose URL is unset: every call raises
    `DownstreamNotConfigured` (503) naming that variable.
    """

    def __init__(
        self,
        name: str,
        *,
        http: Callable[[], httpx.AsyncClient],
        timeout: float,
        breaker: CircuitBreaker,
        bulkhead: Bulkhead,
        retry: RetryPolicy,
        budget: RetryBudget,
        tracer: trace.Tracer,
        retry_listeners: tuple[RetryListener, ...] = (),
        random: Callable[[], float] = _random.random,
        missing_url_variable: str | None = None,
    ) -> None:
        self.name = name
        self.missing_url_variable = missing_url_variable
        self.timeout = timeout
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.retry = retry
        self.budget = budget
        self._http = http
        self._tracer = tracer
        self._retry_listeners = retry_listeners
        self._random = random

    async def get(self, url: str = "", **options: Unpack[CallOptions]) -> httpx.Response:
        return await self.request("GET", url, **options)

    async def post(self, url: str = "", **options: Unpack[CallOptions]) -> httpx.Response:
        return await self.request("POST", url, **options)

    async def put(self, url: str = "", **options: Unpack[CallOptions]) -> httpx.Response:
        return await self.request("PUT", url, **options)

    async def delete(self, url: str = "", **options: Unpack[CallOptions]) -> httpx.Response:
        return await self.request("DELETE", url, **options)

    async def request(
        self,
        method: str,
        url: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        idempotent: bool = False,
        fallback: Fallback | None = None,
    ) -> httpx.Response:
        """One logical call. Returns the response (any status below 500 but the retried ones
        that ran out), or raises a `DownstreamError` (a `Problem`) unless `fallback` is given:
        then its answer is returned instead (e.g. cached data), and the span says so.

        `idempotent=True`, or an `Idempotency-Key` header, allows retrying a POST or PATCH.
        """
        if self.missing_url_variable is not None:
            raise DownstreamNotConfigured(downstream=self.name, variable=self.missing_url_variable)
        method = method.upper()
        # The deadline header is ours to set, from what is left of the deadline.
        headers = {k: v for k, v in (headers or {}).items() if k.lower() != _DEADLINE_KEY}
        if json is not None:
            # Encoded once, strictly (RFC 8259): what JSON cannot carry is the caller's input
            # to fix (a 422), not a failure of this service, and never sent half-encoded.
            content = strict_json(json)
            json = None
            if not any(key.lower() == "content-type" for key in headers):
                headers["content-type"] = "application/json"
        marked = idempotent or any(key.lower() == IDEMPOTENCY_KEY for key in headers)
        # Errors are marked below by kind; the SDK's own recording would add the exception's
        # message and stack trace, costly on the fast-fail path and not for export.
        with self._tracer.start_as_current_span(
            f"{self.name} {method}",
            kind=SpanKind.INTERNAL,
            attributes={"downstream.name": self.name, "http.request.method": method},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response, attempts = await self._call(
                    method, url, marked, headers=headers, params=params, json=json, content=content
                )
            except DownstreamError as error:
                span.set_attributes(
                    {"outcome": error.outcome, "retry.count": max(0, error.attempts - 1)}
                )
                status = error.extensions.get("downstream_status")
                if isinstance(status, int):
                    span.set_attribute("http.response.status_code", status)
                if fallback is None:
                    span.set_status(StatusCode.ERROR)
                    span.set_attribute("error.type", error.outcome)
                    raise
                span.set_attribute("fallback.used", True)
                return await fallback(error)
            except Exception as error:
                span.set_status(StatusCode.ERROR)
                span.set_attribute("error.type", type(error).__qualname__)
                raise
            span.set_attributes(
                {
                    # A 4xx is the downstream working as designed, and the caller's to handle.
                    "outcome": "success" if response.status_code < 400 else "client_error",
                    "retry.count": attempts - 1,
                    "http.response.status_code": response.status_code,
                }
            )
            return response

    async def _call(
        self, method: str, url: str, marked: bool, **request: Any
    ) -> tuple[httpx.Response, int]:
        self.budget.record_request()
        incoming = current_deadline.get()
        wait = self.bulkhead.max_wait
        if incoming is not None:
            wait = min(wait, incoming.remaining())
        try:
            await self.bulkhead.acquire(wait)
        except BulkheadFullError:
            trace.get_current_span().add_event(
                "bulkhead.rejected", {"bulkhead.max_concurrent": self.bulkhead.max_concurrent}
            )
            raise DownstreamBusy(
                downstream=self.name, max_concurrent=self.bulkhead.max_concurrent
            ) from None
        try:
            call = _Call(method, marked, Deadline.after(self.timeout).earliest(incoming))
            return await self._attempts(call, url, request), call.attempts
        finally:
            self.bulkhead.release()

    async def _attempts(self, call: _Call, url: str, request: dict[str, Any]) -> httpx.Response:
        span = trace.get_current_span()
        while True:
            remaining = call.deadline.remaining()
            if remaining <= 0:
                raise DownstreamTimeout(downstream=self.name, attempts=call.attempts, deadline=True)
            permit = self._permit(call)
            call.attempts += 1
            response: httpx.Response | None = None
            failure: httpx.TransportError | None = None
            try:
                response = await self._attempt(call, url, request, permit, remaining)
            except httpx.TransportError as error:
                failure = error
            status = response.status_code if response is not None else None
            decision = self.retry.decide(
                attempt=call.attempts,
                method=call.method,
                status=status,
                failure=transport_failure(failure) if failure is not None else None,
                idempotent=call.idempotent,
                retry_after=(
                    parse_retry_after(response.headers.get("retry-after"))
                    if response is not None
                    else None
                ),
                deadline=call.deadline,
                budget=self.budget,
                random=self._random,
            )
            if not decision.retry:
                if decision.reason is not None and decision.give_up is not None:
                    span.set_attribute("retry.give_up", decision.give_up.value)
                return self._final(call, response, failure)
            assert decision.reason is not None
            for listener in self._retry_listeners:
                listener.on_retry(self.name, decision.reason)
            span.add_event(
                "retry",
                {
                    "retry.attempt": call.attempts + 1,
                    "retry.reason": decision.reason,
                    "retry.delay_s": decision.delay,
                },
            )
            await asyncio.sleep(decision.delay)

    def _permit(self, call: _Call) -> Permit:
        try:
            return self.breaker.acquire()
        except CircuitOpenError as error:
            trace.get_current_span().add_event(
                "circuit_breaker.rejected",
                {
                    "circuit_breaker.name": self.name,
                    "circuit_breaker.state": error.state.label,
                    "circuit_breaker.retry_after_s": error.retry_after,
                },
            )
            raise DownstreamCircuitOpen(
                downstream=self.name, attempts=call.attempts, retry_after=error.retry_after
            ) from None

    async def _attempt(
        self, call: _Call, url: str, request: dict[str, Any], permit: Permit, remaining: float
    ) -> httpx.Response:
        """One attempt, reported to the breaker exactly once (or released, see the module)."""
        headers = {**request["headers"], DEADLINE_HEADER: format_timeout(remaining)}
        started = time.monotonic()
        try:
            # The httpx timeouts bound each operation; this bounds the attempt as a whole.
            async with asyncio.timeout(remaining):
                http = self._http()
                response = await http.request(
                    call.method,
                    url or _exact(http.base_url),
                    headers=headers,
                    params=request["params"],
                    json=request["json"],
                    content=request["content"],
                    extensions={RESEND_COUNT: call.attempts - 1},
                )
        except TimeoutError:
            duration = time.monotonic() - started
            if duration > self.breaker.config.slow_call_duration:
                permit.record_failure(duration)
            else:
                permit.release_without_outcome()  # cut short: nothing learnt
            raise DownstreamTimeout(
                downstream=self.name, attempts=call.attempts, deadline=True
            ) from None
        except httpx.TransportError:
            permit.record_failure(time.monotonic() - started)
            raise
        except BaseException:
            permit.release_without_outcome()  # cancelled, or a bug: nothing to learn
            raise
        duration = time.monotonic() - started
        if response.status_code >= 500 or response.status_code == 429:
            permit.record_failure(duration)
        else:
            permit.record_success(duration)
        return response

    def _final(
        self,
        call: _Call,
        response: httpx.Response | None,
        failure: httpx.TransportError | None,
    ) -> httpx.Response:
        """The last attempt's result as the caller sees it."""
        if response is not None:
            if response.status_code < 500:
                return response
            raise DownstreamUnavailable.answered(
                downstream=self.name,
                attempts=call.attempts,
                status=response.status_code,
                problem_type=problem_type(response),
            )
        assert failure is not None
        if transport_failure(failure) is TransportFailure.TIMEOUT:
            raise DownstreamTimeout(downstream=self.name, attempts=call.attempts, deadline=False)
        raise DownstreamUnavailable.unreachable(
            downstream=self.name, attempts=call.attempts, error=type(failure).__name__
        )
