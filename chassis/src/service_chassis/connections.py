"""Limits on what one HTTP connection may hold on to, enforced in uvicorn's protocol.

uvicorn bounds a keep-alive connection's idle time, but not a new connection that sends
nothing, headers that trickle in, a body that stalls, or the size of the headers (its httptools
parser takes megabytes). Each of these holds a socket and memory for as long as a client
likes. ``GuardedHttpToolsProtocol`` closes such connections:

- headers not complete within ``header_timeout`` seconds of the request's first byte (or of
  the connection's opening): closed, with 408 if anything had arrived;
- headers larger than ``max_header_bytes``: 431 and closed;
- a body that sends nothing for ``body_timeout`` seconds: closed (the app sees a disconnect).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 65_536
    header_timeout: float = 10.0
    body_timeout: float = 30.0


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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._reading_headers = True
        self._request_started = False

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
        return type("GuardedHttpToolsProtocol", (cls,), {"limits": limits})

    def _arm(self, seconds: float, on_expiry: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, on_expiry)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers and not self._request_started:
            # The first byte of a request on a kept-alive connection starts its clock.
            self._request_started = True
            self._arm(self.limits.header_timeout, self._headers_too_slow)
        super().data_received(data)
        if self._reading_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(b"431 Request Header Fields Too Large", b"Request headers too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._reading_headers = True

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes <= self.limits.max_header_bytes:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._header_bytes > self.limits.max_header_bytes:
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
