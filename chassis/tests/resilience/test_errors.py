from __future__ import annotations

import httpx
import pytest

from service_chassis.problems import Problem
from service_chassis.resilience.client import problem_type, transport_failure
from service_chassis.resilience.errors import DownstreamCircuitOpen, DownstreamUnavailable
from service_chassis.resilience.retry import TransportFailure

PROBLEM = {"content-type": "application/problem+json"}


@pytest.mark.parametrize(("retry_after", "header"), [(0.2, "1"), (1.0, "1"), (14.2, "15")])
def test_retry_after_is_whole_seconds_rounded_up(retry_after: float, header: str) -> None:
    error = DownstreamCircuitOpen(downstream="payments", attempts=0, retry_after=retry_after)
    assert isinstance(error, Problem)
    assert error.headers == {"Retry-After": header}
    assert error.extensions == {"downstream": "payments", "attempts": 0}


def test_the_downstream_problem_type_is_kept_and_nothing_else() -> None:
    response = httpx.Response(
        503, headers=PROBLEM, json={"type": "urn:problem:maintenance", "detail": "db01 down"}
    )
    assert problem_type(response) == "urn:problem:maintenance"
    error = DownstreamUnavailable.answered(
        downstream="payments", attempts=1, status=503, problem_type=problem_type(response)
    )
    assert "db01" not in error.detail + repr(error.extensions)


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"content-type": "application/json"}, b'{"type": "urn:x"}'),
        (PROBLEM, b"not json"),
        (PROBLEM, b'["urn:x"]'),
        (PROBLEM, b'{"type": 7}'),
        (PROBLEM, b'{"type": "' + b"x" * 600 + b'"}'),
        (PROBLEM, b'{"type": "urn:x", "pad": "' + b"x" * 70_000 + b'"}'),
    ],
)
def test_anything_else_has_no_problem_type(headers: dict[str, str], content: bytes) -> None:
    assert problem_type(httpx.Response(502, headers=headers, content=content)) is None


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (httpx.ConnectError("refused"), TransportFailure.CONNECT),
        (httpx.ConnectTimeout("slow"), TransportFailure.CONNECT),
        (httpx.PoolTimeout("full"), TransportFailure.CONNECT),
        (httpx.ReadTimeout("slow"), TransportFailure.TIMEOUT),
        (httpx.WriteTimeout("slow"), TransportFailure.TIMEOUT),
        (httpx.ReadError("reset"), TransportFailure.CONNECTION),
        (httpx.RemoteProtocolError("closed"), TransportFailure.CONNECTION),
    ],
)
def test_transport_failures_are_classified_for_retries(
    error: httpx.TransportError, failure: TransportFailure
) -> None:
    assert transport_failure(error) is failure
