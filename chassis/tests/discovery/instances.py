"""Real HTTP servers on loopback that stand for the instances of a downstream service."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from service_chassis.testing.servers import QuietServer


@dataclass
class ServiceInstance:
    name: str
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)


def _handler(state: ServiceInstance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen = {k.lower(): v for k, v in self.headers.items()}
            state.requests.append({**seen, ":path": self.path})
            payload = json.dumps({"instance": state.name}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextlib.contextmanager
def run_instances(*names: str) -> Iterator[list[ServiceInstance]]:
    servers = []
    instances = []
    try:
        for name in names:
            state = ServiceInstance(name)
            server = QuietServer(("127.0.0.1", 0), _handler(state))
            servers.append(server)
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            state.port = server.server_address[1]
            instances.append(state)
        yield instances
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
