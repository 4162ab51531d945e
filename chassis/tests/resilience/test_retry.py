from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service_chassis.resilience.clock import ManualClock
from service_chassis.resilience.deadline import Deadline
from service_chassis.resilience.retry import (
    IDEMPOTENT_METHODS,
    GiveUp,
    RetryBudget,
    RetryDecision,
    RetryPolicy,
    TransportFailure,
    full_jitter_delay,
    is_idempotent,
    parse_retry_after,
    retry_reason,
)


def always(value: float) -> float:
    return value


# -- idempotency


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "get"])
def test_idempotent_methods(method: str) -> None:
    assert is_idempotent(method)


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT", "post"])
def test_non_idempotent_methods(method: str) -> None:
    assert not is_idempotent(method)
    assert is_idempotent(method, marked=True)  # e.g. a POST carrying an idempotency key


def test_idempotent_set_is_rfc_9110s() -> None:
    assert frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) == IDEMPOTENT_METHODS


# -- retryable outcomes


@pytest.mark.parametrize(
    ("status", "failure", "reason"),
    [
        (429, None, "status_429"),
        (502, None, "status_502"),
        (503, None, "status_503"),
        (504, None, "status_504"),
        (None, TransportFailure.CONNECT, "connect_error"),
        (None, TransportFailure.CONNECTION, "connection_error"),
        (None, TransportFailure.TIMEOUT, "timeout"),
    ],
)
def test_retryable_outcomes(
    status: int | None, failure: TransportFailure | None, reason: str
) -> None:
    assert retry_reason(status=status, failure=failure) == reason


@pytest.mark.parametrize("status", [200, 201, 301, 400, 401, 404, 409, 500, 501, 505])
def test_other_statuses_are_not_retried(status: int) -> None:
    assert retry_reason(status=status) is None
    decision = RetryPolicy().decide(attempt=1, method="GET", status=status)
    assert decision == RetryDecision(None, give_up=GiveUp.NOT_RETRYABLE)
    assert not decision.retry


def test_non_idempotent_requests_are_not_retried_when_they_may_have_been_processed() -> None:
    policy = RetryPolicy()
    for outcome in (
        {"status": 503},
        {"failure": TransportFailure.TIMEOUT},
        {"failure": TransportFailure.CONNECTION},
    ):
        decision = policy.decide(attempt=1, method="POST", **outcome)
        assert decision.give_up is GiveUp.NOT_IDEMPOTENT


def test_a_request_that_was_never_sent_may_retry_whatever_its_method() -> None:
    decision = RetryPolicy().decide(attempt=1, method="POST", failure=TransportFailure.CONNECT)
    assert decision.retry
    assert decision.reason == "connect_error"


def test_a_caller_marked_idempotent_post_is_retried() -> None:
    decision = RetryPolicy().decide(attempt=1, method="POST", status=503, idempotent=True)
    assert decision.retry
    assert decision.reason == "status_503"


def test_max_attempts_counts_the_first_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.decide(attempt=1, method="GET", status=503).retry
    assert policy.decide(attempt=2, method="GET", status=503).retry
    decision = policy.decide(attempt=3, method="GET", status=503)
    assert decision.give_up is GiveUp.ATTEMPTS_EXHAUSTED
    assert decision.reason == "status_503"
    assert RetryPolicy(max_attempts=1).decide(attempt=1, method="GET", status=503).give_up


# -- full jitter


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 5, 10])
def test_full_jitter_stays_within_the_exponential_ceiling(retry: int) -> None:
    rng = random.Random(1234)
    ceiling = min(1.0, 0.1 * 2 ** (retry - 1))
    delays = [
        full_jitter_delay(retry, base_delay=0.1, max_delay=1.0, random=rng.random)
        for _ in range(2000)
    ]
    assert all(0.0 <= d < ceiling for d in delays)
    # Full jitter spreads over the whole range, not just near the ceiling.
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling
    assert sum(delays) / len(delays) == pytest.approx(ceiling / 2, rel=0.1)


def test_full_jitter_is_reproducible_with_a_seed() -> None:
    first = [
        full_jitter_delay(n, base_delay=0.1, max_delay=2.0, random=random.Random(7).random)
        for n in range(1, 6)
    ]
    second = [
        full_jitter_delay(n, base_delay=0.1, max_delay=2.0, random=random.Random(7).random)
        for n in range(1, 6)
    ]
    assert first == second


def test_full_jitter_does_not_overflow_on_huge_retry_numbers() -> None:
    delay = full_jitter_delay(10_000, base_delay=0.1, max_delay=2.0, random=lambda: 0.5)
    assert delay == 1.0


def test_full_jitter_rejects_retry_zero() -> None:
    with pytest.raises(ValueError, match="retry numbers start at 1"):
        full_jitter_delay(0, base_delay=0.1, max_delay=1.0)


def test_decide_uses_full_jitter_for_the_delay() -> None:
    policy = RetryPolicy(base_delay=0.2, max_delay=5.0)
    assert policy.decide(attempt=2, method="GET", status=502, random=lambda: 0.5).delay == 0.2
    assert policy.decide(attempt=1, method="GET", status=502, random=lambda: 0.0).delay == 0.0


# -- Retry-After


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after("0") == 0.0


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert parse_retry_after("Thu, 02 Jan 2025 03:04:35 GMT", now=now) == 30.0
    later = format_datetime(datetime(2025, 1, 2, 3, 5, 5, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=now) == 60.0
    assert parse_retry_after("Thu, 02 Jan 2025 03:04:35 -0000", now=now) == 30.0


def test_retry_after_date_in_the_past_means_now() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:00 GMT", now=now) == 0.0


def test_retry_after_date_defaults_to_the_wall_clock() -> None:
    soon = format_datetime(datetime.now(UTC).replace(microsecond=0), usegmt=True)
    delay = parse_retry_after(soon)
    assert delay is not None
    assert delay < 2.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "1e3", "\uff12", "Thu, 99 Foo"])
def test_malformed_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


@given(st.text(max_size=40))
def test_retry_after_parsing_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=0.0)
    assert result is None or (result >= 0 and math.isfinite(result))


def test_retry_after_is_a_minimum_delay() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=1.0, max_retry_after=10.0)
    decision = policy.decide(attempt=1, method="GET", status=429, retry_after=3.0)
    assert decision.retry
    assert decision.delay == 3.0
    short = policy.decide(attempt=3, method="GET", status=503, retry_after=0.0, random=lambda: 0.9)
    assert short.delay == pytest.approx(0.36)  # backoff when the server asks for less


def test_a_retry_after_beyond_the_cap_gives_up() -> None:
    policy = RetryPolicy(max_retry_after=10.0)
    decision = policy.decide(attempt=1, method="GET", status=503, retry_after=10.5)
    assert decision.give_up is GiveUp.RETRY_AFTER_TOO_LONG


# -- deadline


def test_never_sleeps_past_the_deadline() -> None:
    clock = ManualClock()
    deadline = Deadline.after(0.5, clock=clock)
    policy = RetryPolicy()
    assert policy.decide(attempt=1, method="GET", status=503, deadline=deadline).retry
    decision = policy.decide(
        attempt=1, method="GET", status=503, retry_after=1.0, deadline=deadline
    )
    assert decision.give_up is GiveUp.DEADLINE
    clock.advance(0.5)
    expired = policy.decide(attempt=1, method="GET", status=503, deadline=deadline)
    assert expired.give_up is GiveUp.DEADLINE


@given(
    remaining=st.floats(0, 3),
    attempt=st.integers(1, 6),
    draw=st.floats(0, 1, exclude_max=True),
    retry_after=st.none() | st.floats(0, 5),
)
def test_a_retry_always_starts_before_the_deadline(
    remaining: float, attempt: int, draw: float, retry_after: float | None
) -> None:
    deadline = Deadline.after(remaining, clock=ManualClock())
    decision = RetryPolicy(max_attempts=10).decide(
        attempt=attempt,
        method="GET",
        status=503,
        retry_after=retry_after,
        deadline=deadline,
        random=lambda: draw,
    )
    if decision.retry:
        assert decision.delay < remaining


# -- budget


def test_budget_allows_a_ratio_of_requests() -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_second=0.0, window=10.0, clock=ManualClock())
    for _ in range(10):
        budget.record_request()
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()  # 2 retries for 10 requests is 20 %
    for _ in range(5):
        budget.record_request()
    assert budget.try_spend()  # 15 requests allow 3
    assert not budget.try_spend()


def test_budget_reserve_lets_a_quiet_client_retry() -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_second=1.0, window=3.0, clock=ManualClock())
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_budget_refills_as_retries_age_out() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_retries_per_second=1.0, window=2.0, clock=clock)
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(1.0)
    assert not budget.try_spend()  # the spent retries are still in the window
    clock.advance(1.0)
    assert budget.try_spend()


def test_budget_float_error_does_not_cost_a_retry() -> None:
    budget = RetryBudget(ratio=0.29, min_retries_per_second=0.0, window=1.0, clock=ManualClock())
    for _ in range(100):
        budget.record_request()
    assert sum(budget.try_spend() for _ in range(40)) == 29


def test_decide_spends_the_budget_only_when_retrying() -> None:
    budget = RetryBudget(ratio=0.0, min_retries_per_second=1.0, window=1.0, clock=ManualClock())
    policy = RetryPolicy(max_attempts=2)
    assert policy.decide(attempt=2, method="GET", status=503, budget=budget).give_up
    assert policy.decide(attempt=1, method="POST", status=503, budget=budget).give_up
    assert policy.decide(attempt=1, method="GET", status=503, budget=budget).retry
    exhausted = policy.decide(attempt=1, method="GET", status=503, budget=budget)
    assert exhausted.give_up is GiveUp.BUDGET_EXHAUSTED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": -0.1}, "ratio must be >= 0"),
        ({"min_retries_per_second": math.inf}, "min_retries_per_second must be >= 0"),
        ({"window": 2.5}, "whole multiple"),
    ],
)
def test_budget_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


# -- policy validation


def test_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (3, 0.1, 1.0)
    assert policy.max_retry_after == 10.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be >= 1"),
        ({"max_attempts": 2.0}, TypeError, "max_attempts must be an integer"),
        ({"base_delay": -1.0}, ValueError, "base_delay must be a non-negative"),
        ({"max_delay": math.inf}, ValueError, "max_delay must be a non-negative"),
        ({"max_retry_after": math.nan}, ValueError, "max_retry_after must be a non-negative"),
    ],
)
def test_policy_validation(kwargs: dict[str, float], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
