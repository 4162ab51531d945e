"""Bulkhead under real asyncio tasks. Each test runs its own event loop with asyncio.run, so the
tests need no async plugin."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from service_chassis.resilience.bulkhead import Bulkhead, BulkheadFullError


class Rejections:
    def __init__(self) -> None:
        self.names: list[str] = []

    def on_bulkhead_rejection(self, name: str) -> None:
        self.names.append(name)


def test_caps_concurrency_and_queues_within_max_wait() -> None:
    async def main() -> tuple[int, int]:
        bulkhead = Bulkhead("downstream", max_concurrent=3, max_wait=5.0)
        peak = 0

        async def call() -> None:
            nonlocal peak
            async with bulkhead:
                peak = max(peak, bulkhead.in_flight)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(call() for _ in range(20)))
        return peak, bulkhead.in_flight

    peak, left = asyncio.run(main())
    assert peak == 3
    assert left == 0


def test_rejects_after_max_wait() -> None:
    async def main() -> tuple[float, BulkheadFullError, int]:
        listener = Rejections()
        bulkhead = Bulkhead("downstream", max_concurrent=1, max_wait=0.05, listeners=[listener])
        hold = asyncio.Event()

        async def holder() -> None:
            async with bulkhead:
                await hold.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(BulkheadFullError) as caught:
            async with bulkhead:
                pass
        waited = time.monotonic() - started
        assert bulkhead.waiting == 0
        hold.set()
        await task
        assert listener.names == ["downstream"]
        return waited, caught.value, bulkhead.in_flight

    waited, error, in_flight = asyncio.run(main())
    assert 0.04 <= waited < 1.0
    assert (error.name, error.max_concurrent, error.waited) == ("downstream", 1, 0.05)
    assert "bulkhead 'downstream' is full" in str(error)
    assert in_flight == 0


def test_zero_max_wait_rejects_at_once_when_full() -> None:
    async def main() -> None:
        bulkhead = Bulkhead("downstream", max_concurrent=1)
        async with bulkhead:
            with pytest.raises(BulkheadFullError):
                await bulkhead.acquire()
        async with bulkhead:  # free again
            assert bulkhead.in_flight == 1

    asyncio.run(main())


def test_slot_with_a_shorter_wait() -> None:
    async def main() -> None:
        bulkhead = Bulkhead("downstream", max_concurrent=1, max_wait=60.0)
        async with bulkhead:
            started = time.monotonic()
            with pytest.raises(BulkheadFullError):
                async with bulkhead.slot(max_wait=0.01):
                    pass
            assert time.monotonic() - started < 5.0
        async with bulkhead.slot():
            assert bulkhead.in_flight == 1
        assert bulkhead.in_flight == 0

    asyncio.run(main())


def test_waiter_gets_the_slot_when_it_frees_up() -> None:
    async def main() -> list[str]:
        bulkhead = Bulkhead("downstream", max_concurrent=1, max_wait=5.0)
        order: list[str] = []

        async def call(label: str, seconds: float) -> None:
            async with bulkhead:
                order.append(label)
                await asyncio.sleep(seconds)

        first = asyncio.create_task(call("first", 0.02))
        await asyncio.sleep(0)
        await asyncio.gather(first, call("second", 0))
        return order

    assert asyncio.run(main()) == ["first", "second"]


def test_releases_on_exception() -> None:
    async def main() -> int:
        bulkhead = Bulkhead("downstream", max_concurrent=1)
        with pytest.raises(RuntimeError):
            async with bulkhead:
                raise RuntimeError("downstream blew up")
        async with bulkhead:  # would be rejected if the slot had leaked
            pass
        return bulkhead.in_flight

    assert asyncio.run(main()) == 0


def test_releases_when_a_running_call_is_cancelled() -> None:
    async def main() -> int:
        bulkhead = Bulkhead("downstream", max_concurrent=1)

        async def call() -> None:
            async with bulkhead:
                await asyncio.sleep(60)

        task = asyncio.create_task(call())
        await asyncio.sleep(0)
        assert bulkhead.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with bulkhead:
            pass
        return bulkhead.in_flight

    assert asyncio.run(main()) == 0


def test_a_cancelled_waiter_takes_no_slot() -> None:
    async def main() -> None:
        bulkhead = Bulkhead("downstream", max_concurrent=1, max_wait=60.0)
        hold = asyncio.Event()

        async def holder() -> None:
            async with bulkhead:
                await hold.wait()

        async def waiter() -> None:
            async with bulkhead:
                raise AssertionError("a cancelled waiter must not run")

        holding = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.01)
        assert bulkhead.waiting == 1
        waiting.cancel()  # e.g. the request's deadline passed
        with pytest.raises(asyncio.CancelledError):
            await waiting  # cancellation propagates; it is not turned into BulkheadFullError
        assert bulkhead.waiting == 0
        hold.set()
        await holding
        assert bulkhead.in_flight == 0
        async with bulkhead:
            assert bulkhead.in_flight == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_concurrent": 0}, ValueError, "max_concurrent must be >= 1"),
        ({"max_concurrent": 1.5}, TypeError, "max_concurrent must be an integer"),
        ({"max_concurrent": 1, "max_wait": -1.0}, ValueError, "max_wait must be a non-negative"),
        ({"max_concurrent": 1, "max_wait": math.nan}, ValueError, "max_wait must be"),
    ],
)
def test_validation(kwargs: dict[str, float], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Bulkhead("downstream", **kwargs)  # type: ignore[arg-type]
