"""Saga participants over HTTP on loopback, for the crash tests.

``POST /<participant>/<action|compensation>`` acts once per ``Idempotency-Key`` and answers a
repeated key with the first answer. A participant set to reject answers 409. ``hold`` makes the
server act on one call and then keep the connection open without answering, so a test can kill
the orchestrator after the effect and before it hears of it: the worst moment for a crash.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from service_chassis.testing.servers import QuietServer


@dataclass
class Participants:
    url: str = ""
    reject: set[str] = field(default_factory=set)
    hold: tuple[str, str] | None = None  # (participant, kind)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    effects: Counter[tuple[str, str]] = field(default_factory=Counter)
    keys: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: Participants) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            _, participant, kind = self.path.split("/")
            key = self.headers.get("idempotency-key", "")
            with state.lock:
                state.calls[(participant, kind)] += 1
                refused = kind == "action" and participant in state.reject
                if not refused and key not in state.keys:
                    state.keys.add(key)
                    state.effects[(participant, kind)] += 1
                hold = state.hold == (participant, kind) and not state.held.is_set()
                if hold:
                    state.held.set()
            if hold:
                state.release.wait(30)
                return  # the connection closes without an answer
            status, body = (409, {"refused": participant}) if refused else (200, {"ok": True})
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def run_participants() -> Iterator[Participants]:
    state = Participants()
    server = QuietServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
