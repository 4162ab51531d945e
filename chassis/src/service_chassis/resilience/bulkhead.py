"""Bulkhead: caps the calls in flight to one downstream.

A slow downstream otherwise soaks up every task, connection and socket of the service, and the
calls to healthy downstreams starve with it. A caller over the cap waits up to `max_wait` for a
slot, then gets `BulkheadFullError`: failing fast beats queueing behind a stuck dependency.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import NoReturn, Protocol


class BulkheadFullError(Exception):
    """No slot freed up within the wait allowed."""

    def __init__(self, name: str, max_concurrent: int, waited: float) -> None:
        super().__init__(
            f"bulkhead {name!r} is full ({max_concurrent} calls in flight); "
            f"waited {waited:.3f}s for a slot"
        )
        self.name = name
        self.max_concurrent = max_concurrent
        self.waited = waited


class BulkheadListener(Protocol):
    """Hook for metrics and logs. Must not raise."""

    def on_bulkhead_rejection(self, name: str) -> None: ...


class Bulkhead:
    """`async with bulkhead:` around each call to the downstream.

    `slot(max_wait)` waits less than the default (e.g. what is left of a request's deadline).
    Cancelling a waiting or running task never leaks a slot.
    """

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int,
        max_wait: float = 0.0,
        listeners: Iterable[BulkheadListener] = (),
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise TypeError(f"max_concurrent must be an integer, got {max_concurrent!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        _check_wait(max_wait)
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self._listeners = tuple(listeners)
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._in_flight = 0
        self._waiting = 0

    @property
    def in_flight(self) -> int:
        """Calls holding a slot."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return self._waiting

    async def acquire(self, max_wait: float | None = None) -> None:
        """Take a slot, waiting at most `max_wait` (default: the bulkhead's) for one."""
        wait = self.max_wait if max_wait is None else max_wait
        _check_wait(wait)
        # Fast path without a timer; also lets max_wait=0 mean "only if a slot is free now".
        if not self._semaphore.locked():
            await self._semaphore.acquire()  # returns at once: a slot is free
        elif wait == 0:
            self._reject(0.0)
        else:
            self._waiting += 1
            try:
                async with asyncio.timeout(wait):
                    await self._semaphore.acquire()
            except TimeoutError:
                # Only our own timer becomes TimeoutError; an outer cancellation propagates.
                self._reject(wait)
            finally:
                self._waiting -= 1
        self._in_flight += 1

    def release(self) -> None:
        """Give back a slot taken with `acquire()`."""
        self._in_flight -= 1
        self._semaphore.release()

    @asynccontextmanager
    async def slot(self, max_wait: float | None = None) -> AsyncIterator[None]:
        """Hold a slot for the block; see `acquire()`."""
        await self.acquire(max_wait)
        try:
            yield
        finally:
            self.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _reject(self, waited: float) -> NoReturn:
        for listener in self._listeners:
            listener.on_bulkhead_rejection(self.name)
        raise BulkheadFullError(self.name, self.max_concurrent, waited)


def _check_wait(max_wait: float) -> None:
    if not (math.isfinite(max_wait) and max_wait >= 0):
        raise ValueError(f"max_wait must be a non-negative number of seconds, got {max_wait!r}")
