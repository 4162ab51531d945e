"""The resilient client against a real, fault-injecting downstream on loopback (no httpx mocks).

Each test makes its downstream clients with the service's own factory and checks what reached
the downstream (requests, their arrival times, peak concurrency), what the caller got, and what
the spans and metrics say.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

from service_chassis.resilience.breaker import CircuitState
from service_chassis.resilience.client import ResilientClient
from service_chassis.resilience.deadline import DEADLINE_HEADER, Deadline, deadline_scope
from service_chassis.resilience.errors import (
    DownstreamBusy,
    DownstreamCircuitOpen,
    DownstreamError,
    DownstreamTimeout,
    DownstreamUnavailable,
)
from service_chassis.testing.servers import free_port

from .conftest import Harness, attempt_spans, call_spans, events
from .faults import OK, Fault, FaultyDownstream, problem

UNAVAILABLE = Fault(status=503)
BROKEN = Fault(status=500)


def state(client: ResilientClient) -> CircuitState:
    return client.breaker.state


async def test_a_healthy_call_is_one_attempt_inside_one_call_span(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    client = harness.add(faulty.url, timeout_seconds=2.0)
    response = await client.get(headers={"X-Request-Timeout": "999"})
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert faulty.count == 1
    # The downstream learns how long we will wait: never more than the call's own timeout
    # (a deadline header given by the code that calls is replaced, not sent on).
    assert 1.5 < float(faulty.requests[0].headers[DEADLINE_HEADER.lower()]) <= 2.0
    (call,) = call_spans(span_exporter)
    (attempt,) = attempt_spans(span_exporter)
    assert call.name == "downstream GET"
    assert call.attributes is not None
    assert call.attributes["outcome"] == "success"
    assert call.attributes["retry.count"] == 0
    assert call.attributes["http.response.status_code"] == 200
    assert attempt.parent is not None
    assert attempt.parent.span_id == call.context.span_id
    assert "http.request.resend_count" not in (attempt.attributes or {})


async def test_get_is_retried_and_each_attempt_is_a_span_and_an_observation(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    faulty.script(UNAVAILABLE, UNAVAILABLE, then=OK)
    client = harness.add(faulty.url)
    response = await client.get()
    assert response.status_code == 200
    assert faulty.count == 3
    (call,) = call_spans(span_exporter)
    assert call.attributes is not None
    assert call.attributes["retry.count"] == 2
    assert call.attributes["outcome"] == "success"
    attempts = attempt_spans(span_exporter)
    assert [(a.attributes or {}).get("http.request.resend_count") for a in attempts] == [
        None,
        1,
        2,
    ]
    assert all(a.parent is not None and a.parent.span_id == call.context.span_id for a in attempts)
    retries = events(call, "retry")
    assert [r["retry.reason"] for r in retries] == ["status_503", "status_503"]
    labels = {"http_request_method": "GET", "server_address": "127.0.0.1"}
    failed = {**labels, "http_response_status_code": "503", "error_type": "503"}
    passed = {**labels, "http_response_status_code": "200", "error_type": ""}
    assert harness.value("http_client_request_duration_seconds_count", **failed) == 2
    assert harness.value("http_client_request_duration_seconds_count", **passed) == 1
    assert harness.value("outbound_retries_total", name="downstream", reason="status_503") == 2


async def test_retry_delays_grow_with_full_jitter(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    """Each retry waits a random time below a ceiling that doubles: base, then 2 x base."""
    base = 0.01
    client = harness.add(
        faulty.url,
        retry_max_attempts=3,
        retry_base_delay_seconds=base,
        retry_max_delay_seconds=1.0,
        retry_budget_ratio=10.0,  # this test is about delays, not the budget or the breaker
        breaker_minimum_calls=1000,
    )
    calls = 30
    for _ in range(calls):
        faulty.script(UNAVAILABLE, UNAVAILABLE, then=OK)
        assert (await client.get()).status_code == 200
    arrivals = faulty.arrivals()
    first, second = [], []
    for index, span in enumerate(call_spans(span_exporter)):
        delays = [r["retry.delay_s"] for r in events(span, "retry")]
        assert len(delays) == 2
        first.append(delays[0])
        second.append(delays[1])
        # The downstream saw each retry no sooner than its delay after the previous attempt.
        a, b, c = arrivals[3 * index : 3 * index + 3]
        assert b - a >= delays[0] - 0.002
        assert c - b >= delays[1] - 0.002
    assert max(first) <= base
    assert max(second) <= 2 * base
    assert statistics.mean(second) > statistics.mean(first)  # the ceiling grew
    assert len(set(first)) == calls  # jitter: no two callers wait alike
    assert max(first) - min(first) > base / 2


async def test_post_is_not_retried(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    faulty.script(then=UNAVAILABLE)
    client = harness.add(faulty.url)
    with pytest.raises(DownstreamUnavailable) as raised:
        await client.post(json={"order": 1})
    assert faulty.count == 1
    assert raised.value.status == 502
    assert raised.value.extensions["downstream_status"] == 503
    (call,) = call_spans(span_exporter)
    assert call.attributes is not None
    assert call.attributes["retry.give_up"] == "not_idempotent"
    assert call.attributes["outcome"] == "downstream_error"
    assert call.status.status_code is StatusCode.ERROR


async def test_post_with_an_idempotency_key_is_retried(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    faulty.script(UNAVAILABLE, then=OK)
    client = harness.add(faulty.url)
    response = await client.post(json={"order": 1}, headers={"Idempotency-Key": "order-1"})
    assert response.status_code == 200
    assert faulty.count == 2
    assert [seen.method for seen in faulty.requests] == ["POST", "POST"]


async def test_post_is_retried_when_the_connection_was_refused(harness: Harness) -> None:
    """Nothing was sent, so even a POST may go again."""
    client = harness.add(f"http://127.0.0.1:{free_port()}/", retry_max_attempts=3)
    with pytest.raises(DownstreamUnavailable) as raised:
        await client.post(json={})
    assert raised.value.extensions["attempts"] == 3
    assert raised.value.extensions["error_type"] == "ConnectError"
    labels = {
        "http_request_method": "POST",
        "server_address": "127.0.0.1",
        "http_response_status_code": "",
        "error_type": "ConnectError",
    }
    assert harness.value("http_client_request_duration_seconds_count", **labels) == 3


async def test_a_reset_connection_is_retried_then_a_502_without_details(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    faulty.script(then=Fault(reset=True))
    client = harness.add(faulty.url, retry_max_attempts=3)
    with pytest.raises(DownstreamUnavailable) as raised:
        await client.get()
    assert faulty.count == 3
    assert raised.value.extensions["error_type"] in {"ReadError", "RemoteProtocolError"}
    assert "reset" not in raised.value.detail.lower()  # the class name only, not the message


async def test_retries_stop_at_the_budget(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    """No ratio, a reserve of 0.3 retries/s over the 10 s window: three retries in all."""
    faulty.script(then=UNAVAILABLE)
    client = harness.add(
        faulty.url,
        retry_max_attempts=10,
        retry_budget_ratio=0.0,
        retry_budget_min_per_second=0.3,
        breaker_minimum_calls=100,
    )
    for _ in range(3):
        with pytest.raises(DownstreamUnavailable):
            await client.get()
    assert faulty.count == 4 + 1 + 1  # three retries on the first call, none after
    give_ups = [(s.attributes or {}).get("retry.give_up") for s in call_spans(span_exporter)]
    assert give_ups == ["budget_exhausted"] * 3
    assert harness.value("outbound_retries_total", name="downstream", reason="status_503") == 3


async def test_retry_after_is_honoured(harness: Harness, faulty: FaultyDownstream) -> None:
    faulty.script(Fault(status=503, retry_after="1"), then=OK)
    client = harness.add(faulty.url, timeout_seconds=3.0)
    assert (await client.get()).status_code == 200
    first, second = faulty.arrivals()
    assert second - first >= 1.0


async def test_a_retry_after_beyond_the_deadline_gives_up_at_once(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    maintenance = problem(503, "urn:problem:maintenance", "secret internal detail")
    faulty.script(then=dataclasses.replace(maintenance, retry_after="30"))
    client = harness.add(faulty.url, timeout_seconds=2.0)
    started = time.monotonic()
    with pytest.raises(DownstreamUnavailable) as raised:
        await client.get()
    assert time.monotonic() - started < 0.5
    assert faulty.count == 1
    problem_ = raised.value
    assert problem_.extensions["downstream_status"] == 503
    assert problem_.extensions["downstream_type"] == "urn:problem:maintenance"
    assert "secret" not in repr(problem_.extensions) + problem_.detail


async def test_a_slow_downstream_trips_the_deadline_and_no_retry_starts_after_it(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    """Attempts time out on their own read timeout and are retried until the call's deadline
    cuts the last one short: the caller hears at the deadline, not after three read timeouts."""
    faulty.script(then=Fault(delay=5.0))
    deadline = 0.5
    client = harness.add(
        faulty.url, read_timeout=0.2, timeout_seconds=deadline, retry_max_attempts=5
    )
    started = time.monotonic()
    with pytest.raises(DownstreamTimeout) as raised:
        await client.get()
    elapsed = time.monotonic() - started
    # Without the deadline, five attempts of 0.2 s would take 1 s or more: the margin leaves
    # room for a busy machine and still tells the two apart.
    assert deadline <= elapsed < deadline + 0.3
    assert raised.value.status == 504
    assert faulty.count >= 2  # it did retry while there was time
    assert all(at < started + deadline for at in faulty.arrivals())
    (call,) = call_spans(span_exporter)
    assert call.attributes is not None
    assert call.attributes["outcome"] == "deadline_exceeded"
    # Every attempt is observed, the one abandoned at the deadline included.
    total = sum(
        harness.value(
            "http_client_request_duration_seconds_count",
            http_request_method="GET",
            server_address="127.0.0.1",
            http_response_status_code="",
            error_type=error,
        )
        for error in ("ReadTimeout", "CancelledError")
    )
    assert total == faulty.count


async def test_the_incoming_deadline_shortens_the_call_and_is_passed_on(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    """The caller's deadline binds: the attempts it cuts short say nothing about the downstream
    and leave the breaker alone."""
    faulty.script(then=Fault(delay=5.0))
    client = harness.add(faulty.url, timeout_seconds=5.0, breaker_minimum_calls=2)
    for _ in range(3):
        started = time.monotonic()
        with deadline_scope(Deadline.after(0.2)), pytest.raises(DownstreamTimeout):
            await client.get()
        assert time.monotonic() - started < 0.3
    assert all(float(seen.headers["x-request-timeout"]) <= 0.2 for seen in faulty.requests)
    assert state(client) is CircuitState.CLOSED


async def test_attempts_abandoned_at_the_deadline_count_once_they_were_slow(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    """A downstream that hangs longer than every timeout but the deadline opens the breaker."""
    faulty.script(then=Fault(delay=5.0))
    client = harness.add(
        faulty.url,
        read_timeout=5.0,
        timeout_seconds=0.15,
        retry_max_attempts=1,
        breaker_slow_call_seconds=0.1,
        breaker_minimum_calls=2,
    )
    for _ in range(2):
        with pytest.raises(DownstreamTimeout):
            await client.get()
    assert state(client) is CircuitState.OPEN


async def test_the_breaker_waits_for_the_minimum_number_of_calls(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    faulty.script(then=BROKEN)
    client = harness.add(faulty.url, retry_max_attempts=1, breaker_minimum_calls=4)
    for _ in range(3):
        with pytest.raises(DownstreamUnavailable):
            await client.get()
    assert state(client) is CircuitState.CLOSED  # 100 % failures, but only 3 calls
    with pytest.raises(DownstreamUnavailable):
        await client.get()
    assert state(client) is CircuitState.OPEN


async def test_the_breaker_opens_at_the_failure_rate_and_not_below_it(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    client = harness.add(
        faulty.url, retry_max_attempts=1, breaker_minimum_calls=4, breaker_failure_rate=0.5
    )
    faulty.script(OK, OK, BROKEN, OK, OK, BROKEN, BROKEN)
    outcomes = []
    for _ in range(7):
        with contextlib.suppress(DownstreamUnavailable):
            await client.get()
        outcomes.append(state(client))
    # 1/4, 1/5, 2/6 and 3/7 failed: under half, closed. An eighth failure makes it 4/8.
    assert outcomes == [CircuitState.CLOSED] * 7
    faulty.script(BROKEN)
    with pytest.raises(DownstreamUnavailable):
        await client.get()
    assert state(client) is CircuitState.OPEN


async def test_an_open_breaker_fails_fast_without_touching_the_downstream(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    faulty.script(then=BROKEN)
    client = harness.add(
        faulty.url, retry_max_attempts=1, breaker_minimum_calls=2, breaker_open_seconds=30
    )
    for _ in range(2):
        with pytest.raises(DownstreamUnavailable):
            await client.get()
    assert state(client) is CircuitState.OPEN
    reached = faulty.count
    durations = []
    for _ in range(200):
        started = time.perf_counter()
        with pytest.raises(DownstreamCircuitOpen) as raised:
            await client.get()
        durations.append(time.perf_counter() - started)
    assert faulty.count == reached
    assert statistics.median(durations) < 0.0005
    assert raised.value.status == 503
    assert 29 <= int(raised.value.headers["Retry-After"]) <= 30
    assert harness.value("circuit_breaker_rejections_total", name="downstream") == 200
    assert harness.value("circuit_breaker_state", name="downstream") == 1
    last = call_spans(span_exporter)[-1]
    assert last.attributes is not None
    assert last.attributes["outcome"] == "circuit_open"
    (rejected,) = events(last, "circuit_breaker.rejected")
    assert rejected["circuit_breaker.state"] == "open"


async def test_half_open_lets_only_the_trial_calls_through_then_closes(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    faulty.script(BROKEN, BROKEN, then=Fault(delay=0.1))
    client = harness.add(
        faulty.url,
        retry_max_attempts=1,
        breaker_minimum_calls=2,
        breaker_open_seconds=0.2,
        breaker_half_open_calls=2,
    )
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(DownstreamUnavailable):
                await client.get()
        assert state(client) is CircuitState.OPEN
        await asyncio.sleep(0.25)
        before = faulty.count
        results = await asyncio.gather(*(client.get() for _ in range(5)), return_exceptions=True)
    assert faulty.count - before == 2  # the permitted trials, no more
    assert sum(isinstance(r, httpx.Response) for r in results) == 2
    assert sum(isinstance(r, DownstreamCircuitOpen) for r in results) == 3
    assert state(client) is CircuitState.CLOSED
    transitions = [(e["from_state"], e["to_state"]) for e in logs if "breaker" in e]
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    for from_state, to_state in transitions:
        labels = {"name": "downstream", "from_state": from_state, "to_state": to_state}
        assert harness.value("circuit_breaker_transitions_total", **labels) == 1
    assert harness.value("circuit_breaker_state", name="downstream") == 0
    marked = [e for s in call_spans(span_exporter) for e in events(s, "circuit_breaker.transition")]
    assert [(e["circuit_breaker.from_state"], e["circuit_breaker.to_state"]) for e in marked] == (
        transitions
    )


async def test_a_failed_trial_opens_the_breaker_again(
    harness: Harness, faulty: FaultyDownstream
) -> None:
    faulty.script(then=BROKEN)
    client = harness.add(
        faulty.url,
        retry_max_attempts=1,
        breaker_minimum_calls=2,
        breaker_open_seconds=0.1,
        breaker_half_open_calls=1,
    )
    for _ in range(2):
        with pytest.raises(DownstreamUnavailable):
            await client.get()
    await asyncio.sleep(0.15)
    with pytest.raises(DownstreamUnavailable):
        await client.get()  # the trial
    assert state(client) is CircuitState.OPEN
    labels = {"name": "downstream", "from_state": "half_open", "to_state": "open"}
    assert harness.value("circuit_breaker_transitions_total", **labels) == 1
    with pytest.raises(DownstreamCircuitOpen):
        await client.get()


async def test_the_bulkhead_caps_concurrency_and_rejects_the_excess_quickly(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    faulty.script(then=Fault(delay=0.3))
    client = harness.add(faulty.url, bulkhead_max_concurrent=3, bulkhead_max_wait_seconds=0.05)

    async def timed() -> tuple[float, object]:
        started = time.monotonic()
        try:
            result: object = await client.get()
        except DownstreamError as error:
            result = error
        return time.monotonic() - started, result

    results = await asyncio.gather(*(timed() for _ in range(10)))
    assert faulty.peak == 3
    assert faulty.count == 3
    rejected = [elapsed for elapsed, result in results if isinstance(result, DownstreamBusy)]
    assert len(rejected) == 7
    assert max(rejected) < 0.15  # the bounded wait, not the downstream's 0.3 s
    assert harness.value("bulkhead_rejections_total", name="downstream") == 7
    outcomes = [str((s.attributes or {})["outcome"]) for s in call_spans(span_exporter)]
    assert sorted(outcomes) == ["bulkhead_full"] * 7 + ["success"] * 3
    busy = next(r for _, r in results if isinstance(r, DownstreamBusy))
    assert busy.status == 503


async def test_a_fallback_answers_instead_of_the_error(
    harness: Harness, span_exporter: InMemorySpanExporter
) -> None:
    client = harness.add(f"http://127.0.0.1:{free_port()}/", retry_max_attempts=1)
    seen: list[DownstreamError] = []

    async def cached(error: DownstreamError) -> httpx.Response:
        seen.append(error)
        return httpx.Response(200, json={"stock": 3, "stale": True})

    response = await client.get(fallback=cached)
    assert response.json() == {"stock": 3, "stale": True}
    assert isinstance(seen[0], DownstreamUnavailable)
    (call,) = call_spans(span_exporter)
    assert call.attributes is not None
    assert call.attributes["fallback.used"] is True
    assert call.attributes["outcome"] == "unavailable"


async def test_a_4xx_answer_is_returned_not_retried_and_not_held_against_the_downstream(
    harness: Harness, faulty: FaultyDownstream, span_exporter: InMemorySpanExporter
) -> None:
    faulty.script(then=problem(404, "urn:problem:no-such-sku", "no sku 7"))
    client = harness.add(faulty.url, breaker_minimum_calls=2)
    for _ in range(3):
        response = await client.get()
        assert response.status_code == 404
    assert faulty.count == 3
    assert state(client) is CircuitState.CLOSED
    outcomes = [(s.attributes or {}).get("outcome") for s in call_spans(span_exporter)]
    assert outcomes == ["client_error"] * 3
