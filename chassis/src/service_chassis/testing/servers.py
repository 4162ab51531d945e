"""Real servers on loopback for tests: a recording downstream and the service as a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RecordingDownstream:
    """Answers every GET and POST with a fixed status and JSON body and remembers the headers
    it saw."""

    url: str = ""
    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    delay: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _downstream_handler(state: RecordingDownstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))  # a POST's body
            state.requests.append({k.lower(): v for k, v in self.headers.items()})
            state.paths.append(self.path)
            if state.delay:
                time.sleep(state.delay)
            payload = json.dumps(state.body).encode()
            self.send_response(state.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_GET  # noqa: N815 - the name is fixed by http.server

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class QuietServer(ThreadingHTTPServer):
    """A loopback test server that does not print a traceback when a client hangs up early
    (tests that time out or cancel a call do that on purpose)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def run_downstream() -> Iterator[RecordingDownstream]:
    state = RecordingDownstream()
    server = QuietServer(("127.0.0.1", 0), _downstream_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/resource"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class ServiceProcess:
    process: subprocess.Popen[str]
    base_url: str
    lines: list[str]
    reader: threading.Thread

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process, wait for it to exit, and collect the rest of its output."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.reader.join(timeout=5)
            if self.process.stdout is not None:
                self.process.stdout.close()
        return code

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]


def start_service(
    package: str, env: Mapping[str, str], *, ready_path: str = "/health/live", timeout: float = 20.0
) -> ServiceProcess:
    """Run ``python -m <package>`` on a free port; return once ``ready_path`` answers 200.

    It runs in the current directory, with its ``src`` folder (if any) on the module path, as
    a test run from the project's root expects."""
    port = free_port()
    src = str(Path.cwd() / "src")
    full_env = {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", package],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            ServiceProcess(process, base_url, lines, reader).stop()
            raise AssertionError("service exited early:\n" + "".join(lines))
        try:
            if httpx.get(base_url + ready_path, timeout=0.5).status_code == 200:
                return ServiceProcess(process, base_url, lines, reader)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    ServiceProcess(process, base_url, lines, reader).stop(signal.SIGKILL)
    raise AssertionError("service did not become ready:\n" + "".join(lines))


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 10.0, what: str = ""
) -> None:
    """Wait until ``condition`` holds; fail with ``what`` when it does not in time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within} s: {what or condition}")


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client
