"""What the benchmark scripts share: a free loopback port and an OTLP sink to export to."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Accepts OTLP/HTTP exports and discards them, so a traced run pays the real export cost.
SINK = textwrap.dedent(
    """
    import os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Sink).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_sink() -> Iterator[int]:
    """The OTLP sink in a process of its own, accepting on the port yielded, stopped after."""
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if sink.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the OTLP sink did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        sink.terminate()
        sink.wait(timeout=10)
