"""Limits on what one HTTP connection may hold on to, enforced in uvicorn's protocol.

uvicorn bounds a keep-alive connection's idle time, but not a new connection that sends
nothing, headers that trickle in, a body that stalls, or the size of the headers (its httptools
parser takes megabytes). Each of these holds a socket and memory for as long as a client
likes. ``GuardedHttpToolsProtocol`` closes such connections:

- headers not complete within ``header_timeout`` seconds of the request's first byte (or of
  the connection's opening): closed, with 408 if anything had arrived;
- headers larger than ``max_header_bytes``: 431 and closed;
- a body that sends nothing for ``body_timeout`` seconds: closed (the app sees a disconnect).

The clocks are deadlines checked by one sweep per event loop, a few times per shortest limit,
instead of a timer armed and cancelled per request: two timers per request cost more than
the rest of these checks together, and a limit of seconds needs no better than a fraction of
one.

The size of the headers is counted per chunk received, not per header: httptools calls back
into Python for the URL and for every header, and an override of each call cost more than
the count. While the headers are incomplete, every byte received since the request began
counts (more than that many bytes of an unfinished request line and headers: 431); once they
are complete, they are measured as before (URL and header lines) only when the chunks they
came in could hold more than the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 65_536
    header_timeout: float = 10.0
    body_timeout: float = 30.0

    @property
    def sweep_interval(self) -> float:
        """How often deadlines are checked: a quarter of the shortest limit, within bounds."""
        return min(max(min(self.header_timeout, self.body_timeout) / 4, 0.05), 1.0)


class DeadlineSweep:
    """The connections of one event loop that have a deadline, checked every ``interval``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._interval = interval
        self._connections: set[GuardedHttpToolsProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: GuardedHttpToolsProtocol) -> None:
        self._connections.add(connection)
        if self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._sweep)

    def discard(self, connection: GuardedHttpToolsProtocol) -> None:
        self._connections.discard(connection)

    def _sweep(self) -> None:
        now = self._loop.time()
        for connection in [c for c in self._connections if c.deadline_passed(now)]:
            connection.expire()
        # Runs while there are connections: an idle service schedules nothing.
        self._timer = (
            self._loop.call_later(self._interval, self._sweep) if self._connections else None
        )


def _plain_response(status: bytes, message: bytes) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(message)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            message,
        ]
    )


_sweeps: dict[tuple[asyncio.AbstractEventLoop, float], DeadlineSweep] = {}


def _sweep_for(loop: asyncio.AbstractEventLoop, interval: float) -> DeadlineSweep:
    sweep = _sweeps.get((loop, interval))
    if sweep is None:
        for key in [key for key in _sweeps if key[0].is_closed()]:
            del _sweeps[key]  # a finished loop's (tests run several)
        sweep = _sweeps[(loop, interval)] = DeadlineSweep(loop, interval)
    return sweep


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: float | None = None
        self._on_expiry: Callable[[], None] = self._headers_too_slow
        self._sweep = _sweep_for(self.loop, self.limits.sweep_interval)
        # Bytes received while this request's headers were incomplete, but the last chunk's.
        self._header_bytes = 0
        self._chunk_bytes = 0
        self._reading_headers = True
        self._request_started = False

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
        return type("GuardedHttpToolsProtocol", (cls,), {"limits": limits})

    def _arm(self, seconds: float, on_expiry: Callable[[], None]) -> None:
        self._deadline = self.loop.time() + seconds
        self._on_expiry = on_expiry

    def _disarm(self) -> None:
        self._deadline = None

    def deadline_passed(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    def expire(self) -> None:
        self._deadline = None
        self._on_expiry()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._headers_too_slow)
        self._sweep.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._sweep.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers and not self._request_started:
            # The first byte of a request on a kept-alive connection starts its clock.
            self._request_started = True
            self._arm(self.limits.header_timeout, self._headers_too_slow)
        self._chunk_bytes = len(data)
        super().data_received(data)
        if self._reading_headers:
            # Still incomplete: the whole chunk is part of them (or of the previous request,
            # which it may end: an overcount only, bounded by one chunk).
            self._header_bytes += self._chunk_bytes
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(b"431 Request Header Fields Too Large", b"Request headers too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._reading_headers = True

    def _headers_too_large(self) -> bool:
        limit = self.limits.max_header_bytes
        # The headers came in the chunks counted so far and part of this one; each header
        # line is at least 3 bytes of the 4 it is measured as, hence the one per header.
        if self._header_bytes + self._chunk_bytes + len(self.headers) <= limit:
            return False
        lines = sum(len(name) + len(value) + 4 for name, value in self.headers)
        return len(self.url) + lines > limit

    def on_headers_complete(self) -> None:
        if self._headers_too_large():
            # Complete, but too large: refused before the app ever sees the request.
            self._refuse(b"431 Request Header Fields Too Large", b"Request headers too large.")
            return
        self._reading_headers = False
        self._arm(self.limits.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.transport.is_closing():
            return  # refused: the rest of this request goes nowhere
        self._arm(self.limits.body_timeout, self._body_too_slow)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._reading_headers = True
        self._request_started = False
        super().on_response_complete()

    def _headers_too_slow(self) -> None:
        if self.transport.is_closing():
            return
        if self._request_started or self._header_bytes:
            self._refuse(b"408 Request Timeout", b"Request headers took too long.")
        else:
            self.transport.close()

    def _body_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: bytes, message: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_plain_response(status, message))
            self.transport.close()
