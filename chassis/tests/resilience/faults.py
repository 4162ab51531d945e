"""A fault-injecting downstream on loopback: a real HTTP server that answers slowly, with 5xx,
with 503 and ``Retry-After``, or resets the connection, as the test scripts it.

Each request takes the next fault from ``plan`` (then ``default`` once the plan is used up) and
is recorded with its arrival time, so tests count the requests that reached the downstream,
measure the gaps between retries and the peak number of requests in flight.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Fault:
    status: int = 200
    delay: float = 0.0  # seconds before answering (or resetting)
    retry_after: str | None = None
    reset: bool = False  # close the connection with a TCP RST instead of answering
    content_type: str = "application/json"
    body: bytes = b'{"ok": true}'


OK = Fault()


def problem(status: int, type_: str, detail: str) -> Fault:
    """An RFC 9457 answer, as a well-behaved downstream fails."""
    body = json.dumps({"type": type_, "title": "Failed", "status": status, "detail": detail})
    return Fault(status=status, content_type="application/problem+json", body=body.encode())


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class FaultyDownstream:
    url: str = ""
    default: Fault = OK
    plan: deque[Fault] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def script(self, *faults: Fault, then: Fault | None = None) -> None:
        """Answer the next requests with ``faults`` in order, then with ``then`` (or default)."""
        with self.lock:
            self.plan = deque(faults)
            if then is not None:
                self.default = then

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def arrivals(self) -> list[float]:
        with self.lock:
            return [seen.at for seen in self.requests]

    def _begin(self, seen: Seen) -> Fault:
        with self.lock:
            self.requests.append(seen)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return self.plan.popleft() if self.plan else self.default

    def _end(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _handler(state: FaultyDownstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle on, each answer would wait
        # for the client's delayed ACK (40 ms on Linux).
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            seen = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                time.monotonic(),
            )
            fault = state._begin(seen)
            try:
                if fault.delay:
                    state.stopping.wait(fault.delay)
                if fault.reset:
                    # SO_LINGER with a zero timeout: close() sends RST, not FIN.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True
                    return
                self.send_response(fault.status)
                self.send_header("content-type", fault.content_type)
                self.send_header("content-length", str(len(fault.body)))
                if fault.retry_after is not None:
                    self.send_header("retry-after", fault.retry_after)
                self.end_headers()
                self.wfile.write(fault.body)
            finally:
                state._end()

        do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - names fixed by http.server

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):  # the connection was reset on purpose
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # resets and clients that gave up are the point of this server


def run_faulty_downstream() -> Iterator[FaultyDownstream]:
    state = FaultyDownstream()
    server = _Server(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/resource"
    try:
        yield state
    finally:
        state.stopping.set()  # slow answers end now
        server.shutdown()
        server.server_close()
