from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service_chassis.resilience.clock import ManualClock
from service_chassis.resilience.deadline import (
    DEADLINE_HEADER,
    Deadline,
    current_deadline,
    deadline_scope,
    enter_request_deadline,
    format_timeout,
    get_deadline,
    parse_timeout,
)


def test_remaining_and_expired() -> None:
    clock = ManualClock(50.0)
    deadline = Deadline.after(2.0, clock=clock)
    assert deadline.expires_at == 52.0
    assert deadline.remaining() == 2.0
    expired = [deadline.expired]
    clock.advance(1.5)
    assert deadline.remaining() == 0.5
    clock.advance(0.5)
    expired.append(deadline.expired)
    assert expired == [False, True]
    assert deadline.remaining() == 0.0
    clock.advance(10)
    assert deadline.remaining() == 0.0  # never negative


def test_after_needs_a_finite_number() -> None:
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError, match="finite number of seconds"):
            Deadline.after(bad, clock=ManualClock())


def test_the_earliest_deadline_wins() -> None:
    clock = ManualClock()
    soon, later = Deadline.after(1.0, clock=clock), Deadline.after(5.0, clock=clock)
    assert soon.earliest(later) is soon
    assert later.earliest(soon) is soon
    assert later.earliest(None) is later
    assert min(later, soon) is soon  # ordered by expiry, the clock is not compared
    assert soon < later
    assert Deadline(3.0, clock) == Deadline(3.0, ManualClock())


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2.5", 2.5), ("0", 0.0), (" 3 ", 3.0), (".5", 0.5), ("5.", 5.0), ("30", 30.0)],
)
def test_parse_timeout(value: str, seconds: float) -> None:
    assert parse_timeout(value) == seconds


@pytest.mark.parametrize(
    "value", [None, "", "-1", "abc", "1e3", "inf", "nan", "1,5", "\uff12", "1 2", "9" * 400]
)
def test_malformed_timeouts_are_ignored(value: str | None) -> None:
    assert parse_timeout(value) is None


def test_format_timeout_rounds_down_to_the_millisecond() -> None:
    assert format_timeout(2.5) == "2.500"
    assert format_timeout(2.4999) == "2.499"
    assert format_timeout(0.0) == "0.000"
    assert format_timeout(-1.0) == "0.000"
    assert format_timeout(1234.5678) == "1234.567"


@given(st.floats(0, 1e6))
def test_format_then_parse_never_gains_time(seconds: float) -> None:
    parsed = parse_timeout(format_timeout(seconds))
    assert parsed is not None
    assert seconds - 0.0011 <= parsed <= seconds


@given(st.text(max_size=30))
def test_parse_timeout_never_raises(value: str) -> None:
    result = parse_timeout(value)
    assert result is None or (result >= 0 and math.isfinite(result))


def test_from_header() -> None:
    clock = ManualClock(10.0)
    assert Deadline.from_header("2.5", default=5.0, clock=clock).remaining() == 2.5
    assert Deadline.from_header(None, default=5.0, clock=clock).remaining() == 5.0
    assert Deadline.from_header("soon", default=5.0, clock=clock).remaining() == 5.0
    capped = Deadline.from_header("3600", default=5.0, maximum=30.0, clock=clock)
    assert capped.remaining() == 30.0
    assert Deadline.from_header("0", default=5.0, clock=clock).expired


def test_header_value_is_the_time_left() -> None:
    clock = ManualClock()
    deadline = Deadline.after(2.0, clock=clock)
    clock.advance(0.25)
    assert deadline.header_value() == "1.750"
    assert DEADLINE_HEADER == "X-Request-Timeout"


def test_deadline_scope_sets_and_restores() -> None:
    clock = ManualClock()
    assert get_deadline() is None
    deadline = Deadline.after(2.0, clock=clock)
    with deadline_scope(deadline) as effective:
        assert effective is deadline
        assert get_deadline() is deadline
    assert get_deadline() is None


def test_an_inner_scope_can_shorten_but_never_extend() -> None:
    clock = ManualClock()
    outer = Deadline.after(2.0, clock=clock)
    with deadline_scope(outer):
        with deadline_scope(Deadline.after(10.0, clock=clock)) as effective:
            assert effective is outer
        shorter = Deadline.after(1.0, clock=clock)
        with deadline_scope(shorter) as effective:
            assert effective is shorter
            assert get_deadline() is shorter
        with deadline_scope(None) as effective:
            assert effective is outer
        assert get_deadline() is outer


def test_deadline_scope_restores_after_an_exception() -> None:
    with pytest.raises(RuntimeError), deadline_scope(Deadline.after(1.0, clock=ManualClock())):
        raise RuntimeError
    assert current_deadline.get() is None


def test_each_request_task_sees_its_own_deadline() -> None:
    clock = ManualClock()

    async def request(seconds: float) -> float | None:
        with deadline_scope(Deadline.after(seconds, clock=clock)):
            await asyncio.sleep(0.01)  # let the other request run in between
            deadline = get_deadline()
            return None if deadline is None else deadline.remaining()

    async def main() -> list[float | None]:
        return list(await asyncio.gather(request(1.0), request(2.0)))

    assert asyncio.run(main()) == [1.0, 2.0]


HEADERS = [(b"host", b"service"), (b"accept", b"*/*")]


@pytest.mark.parametrize("value", [None, b"soon", b"-1", b"9" * 400])
def test_a_request_without_a_usable_header_sets_nothing(value: bytes | None) -> None:
    headers = HEADERS if value is None else [*HEADERS, (b"x-request-timeout", value)]
    assert enter_request_deadline(headers) is None
    assert current_deadline.get() is None


def test_a_request_header_becomes_the_current_deadline_until_reset() -> None:
    token = enter_request_deadline([*HEADERS, (b"x-request-timeout", b"0.75")])
    assert token is not None
    deadline = current_deadline.get()
    assert deadline is not None
    assert 0.7 < deadline.remaining() <= 0.75
    current_deadline.reset(token)
    assert current_deadline.get() is None


def test_a_request_header_cannot_extend_a_deadline_already_in_force() -> None:
    outer = Deadline.after(0.5)
    with deadline_scope(outer):
        token = enter_request_deadline([(b"x-request-timeout", b"60")])
        assert token is not None
        assert current_deadline.get() is outer
        current_deadline.reset(token)
