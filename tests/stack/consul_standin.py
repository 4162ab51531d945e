"""A Consul agent stand-in: the HTTP API that baked services and Prometheus call, in memory.

Consul does not run here, so this serves, in the shapes Consul's HTTP API (v1) documents, what
the two sides of the `consul-services` scrape job use:

- a baked service (discovery=consul) registers and deregisters itself through the agent:
  ``PUT /v1/agent/service/register``, ``PUT /v1/agent/service/deregister/<id>``,
  ``GET /v1/agent/service/<id>``, and resolves ``consul://name`` through
  ``GET /v1/health/service/<name>?passing=true``;
- Prometheus's Consul discovery (hashicorp/consul/api) asks ``GET /v1/agent/self`` for the
  datacenter, then watches ``GET /v1/catalog/services`` and ``GET /v1/health/service/<name>``
  with blocking queries: ``?index=N&wait=D`` holds the request until the state's index moves
  past N or D passes, and every answer carries ``X-Consul-Index`` (plus the
  ``X-Consul-LastContact`` and ``X-Consul-KnownLeader`` headers the client requires).

Like an agent, it runs each registration's HTTP check (critical until it first passes) and
lists itself as the service ``consul``, which has no ``metrics_path`` and must not be scraped.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DATACENTER = "dc1"
NODE = "standin"
NODE_ADDRESS = "127.0.0.1"
DEFAULT_WAIT_S = 300.0  # Consul's default for a blocking query; the maximum is 600 s
MAX_WAIT_S = 600.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_s(text: str) -> float:
    """A Go duration ("10s", "1m30s", "120000ms") in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class Registration:
    definition: dict[str, Any]
    status: str = "critical"  # Consul starts a new check as critical
    output: str = ""
    next_check: float = 0.0
    critical_since: float = field(default_factory=time.monotonic)

    @property
    def service_id(self) -> str:
        return str(self.definition.get("ID") or self.definition["Name"])


@dataclass
class ConsulStandin:
    """State and behaviour; ``serve()`` puts it on a loopback port."""

    registrations: dict[str, Registration] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    index: int = 1
    url: str = ""
    _changed: threading.Condition = field(default_factory=threading.Condition)

    # --- state ---------------------------------------------------------------------------

    def _bump(self) -> None:
        # Callers hold the condition.
        self.index += 1
        self._changed.notify_all()

    def register(self, definition: dict[str, Any]) -> None:
        if not isinstance(definition, dict) or not definition.get("Name"):
            raise ValueError("Missing service name")
        with self._changed:
            registration = Registration(definition)
            previous = self.registrations.get(registration.service_id)
            if previous is not None and previous.definition == definition:
                registration = previous
            self.registrations[registration.service_id] = registration
            self._bump()

    def deregister(self, service_id: str) -> bool:
        with self._changed:
            if self.registrations.pop(service_id, None) is None:
                return False
            self._bump()
            return True

    def wait_for_change(self, index: int, wait_s: float) -> int:
        """Blocks while the state's index is still `index` (a blocking query), at most wait_s."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            # An index from before a restart (larger than ours) answers at once, as Consul does.
            while self.index == index and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return self.index

    def run_checks(self) -> None:
        """One round of HTTP checks: each registration whose interval is due is probed."""
        now = time.monotonic()
        with self._changed:
            due = [r for r in self.registrations.values() if r.next_check <= now]
        for registration in due:
            check = registration.definition.get("Check") or {}
            url = check.get("HTTP")
            if not url:
                status, output = "passing", ""
            else:
                status, output = probe(
                    url, check.get("Method", "GET"), duration_s(check.get("Timeout", "10s"))
                )
            interval = duration_s(check.get("Interval", "10s")) if url else 3600.0
            with self._changed:
                registration.next_check = time.monotonic() + interval
                if status != "critical":
                    registration.critical_since = 0.0
                elif not registration.critical_since:
                    registration.critical_since = time.monotonic()
                if (registration.status, registration.output) != (status, output):
                    registration.status, registration.output = status, output
                    if self.registrations.get(registration.service_id) is registration:
                        self._bump()
        self._reap()

    def _reap(self) -> None:
        """Removes registrations critical for longer than their DeregisterCriticalServiceAfter
        (Consul's reaper runs every 30 s, so it may take that much longer there)."""
        now = time.monotonic()
        with self._changed:
            for service_id, registration in list(self.registrations.items()):
                after = (registration.definition.get("Check") or {}).get(
                    "DeregisterCriticalServiceAfter"
                )
                since = registration.critical_since
                if after and since and now - since > duration_s(after):
                    del self.registrations[service_id]
                    self._bump()

    # --- the API's answers ---------------------------------------------------------------

    def catalog_services(self) -> dict[str, list[str]]:
        services: dict[str, set[str]] = {"consul": set()}
        with self._changed:
            for registration in self.registrations.values():
                name = registration.definition["Name"]
                services.setdefault(name, set()).update(registration.definition.get("Tags") or [])
        return {name: sorted(tags) for name, tags in services.items()}

    def health_service(self, name: str, passing: bool, tags: list[str]) -> list[dict[str, Any]]:
        node = {
            "ID": "00000000-0000-0000-0000-000000000001",
            "Node": NODE,
            "Address": NODE_ADDRESS,
            "Datacenter": DATACENTER,
            "TaggedAddresses": {"lan": NODE_ADDRESS, "wan": NODE_ADDRESS},
            "Meta": {"consul-network-segment": ""},
        }
        serf = {
            "Node": NODE,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": "passing",
            "ServiceID": "",
            "ServiceName": "",
        }
        if name == "consul":
            service = {"ID": "consul", "Service": "consul", "Tags": [], "Address": "", "Port": 8300}
            return [{"Node": node, "Service": _service(service), "Checks": [serf]}]
        entries = []
        with self._changed:
            registrations = [r for r in self.registrations.values() if r.definition["Name"] == name]
        for registration in registrations:
            definition = registration.definition
            if not set(tags) <= set(definition.get("Tags") or []):
                continue
            checks = [serf]
            if definition.get("Check"):
                checks.append(
                    {
                        "Node": NODE,
                        "CheckID": f"service:{registration.service_id}",
                        "Name": definition["Check"].get("Name") or f"Service '{name}' check",
                        "Status": registration.status,
                        "Output": registration.output,
                        "ServiceID": registration.service_id,
                        "ServiceName": name,
                    }
                )
            if passing and any(check["Status"] != "passing" for check in checks):
                continue
            service = {
                "ID": registration.service_id,
                "Service": name,
                "Tags": definition.get("Tags") or [],
                "Address": definition.get("Address", ""),
                "Port": definition.get("Port", 0),
                "Meta": definition.get("Meta") or {},
            }
            entries.append({"Node": node, "Service": _service(service), "Checks": checks})
        return entries

    def agent_service(self, service_id: str) -> dict[str, Any] | None:
        with self._changed:
            registration = self.registrations.get(service_id)
        if registration is None:
            return None
        definition = registration.definition
        return _service(
            {
                "ID": service_id,
                "Service": definition["Name"],
                "Tags": definition.get("Tags") or [],
                "Address": definition.get("Address", ""),
                "Port": definition.get("Port", 0),
                "Meta": definition.get("Meta") or {},
                "Datacenter": DATACENTER,
            }
        )

    def agent_self(self) -> dict[str, Any]:
        return {
            "Config": {
                "Datacenter": DATACENTER,
                "NodeName": NODE,
                "NodeID": "00000000-0000-0000-0000-000000000001",
                "Server": True,
                "Version": "1.20.6",
            },
            "Member": {"Name": NODE, "Addr": NODE_ADDRESS, "Port": 8301, "Status": 1},
        }

    # --- serving -------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[ConsulStandin]:
        standin = self
        stopping = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                path = parts.path
                query = parse_qs(parts.query, keep_blank_values=True)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._send(400, f"Request decode failed: {raw[:80]!r}")
                    return
                standin.calls.append(Call(method, path, query, body))
                try:
                    self._route(method, path, query, body)
                except ValueError as error:
                    self._send(400, str(error))

            def _route(
                self, method: str, path: str, query: dict[str, list[str]], body: Any
            ) -> None:
                dc = query.get("dc", [DATACENTER])[0]
                if dc != DATACENTER:
                    self._send(500, f"No path to datacenter {dc}")
                    return
                if method == "PUT" and path == "/v1/agent/service/register":
                    standin.register(body)
                    self._send(200, "")
                elif method == "PUT" and path.startswith("/v1/agent/service/deregister/"):
                    service_id = unquote(path.removeprefix("/v1/agent/service/deregister/"))
                    if standin.deregister(service_id):
                        self._send(200, "")
                    else:
                        self._send(404, f'Unknown service ID "{service_id}"')
                elif method == "GET" and path == "/v1/agent/self":
                    self._send(200, standin.agent_self())
                elif method == "GET" and path.startswith("/v1/agent/service/"):
                    found = standin.agent_service(unquote(path.removeprefix("/v1/agent/service/")))
                    if found is None:
                        self._send(404, "unknown service ID")
                    else:
                        self._send(200, found)
                elif method == "GET" and path == "/v1/catalog/services":
                    index = self._block(query)
                    self._send(200, standin.catalog_services(), index)
                elif method == "GET" and path.startswith("/v1/health/service/"):
                    name = unquote(path.removeprefix("/v1/health/service/"))
                    index = self._block(query)
                    passing = "passing" in query and query["passing"][0] not in ("0", "false")
                    entries = standin.health_service(name, passing, query.get("tag", []))
                    self._send(200, entries, index)
                elif method == "GET" and path == "/v1/status/leader":
                    self._send(200, f"{NODE_ADDRESS}:8300")
                else:
                    self._send(404, f"no such endpoint in the stand-in: {method} {path}")

            def _block(self, query: dict[str, list[str]]) -> int:
                if "index" not in query:
                    return standin.index
                index = int(query["index"][0])
                wait = query.get("wait", [""])[0]
                wait_s = min(duration_s(wait), MAX_WAIT_S) if wait else DEFAULT_WAIT_S
                # Consul adds up to wait/16 of jitter; none is needed here.
                end = time.monotonic() + wait_s
                current = standin.index
                while not stopping.is_set() and (left := end - time.monotonic()) > 0:
                    current = standin.wait_for_change(index, min(left, 0.5))
                    if current != index:
                        break
                return current

            def _send(self, status: int, payload: Any, index: int | None = None) -> None:
                if isinstance(payload, str):
                    data, content_type = payload.encode(), "text/plain; charset=utf-8"
                else:
                    data, content_type = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if index is not None:
                    self.send_header("X-Consul-Index", str(index))
                    self.send_header("X-Consul-LastContact", "0")
                    self.send_header("X-Consul-KnownLeader", "true")
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self.url = f"http://{host}:{server.server_address[1]}"

        def checks() -> None:
            while not stopping.wait(0.2):
                self.run_checks()

        threads = [
            threading.Thread(target=server.serve_forever, daemon=True),
            threading.Thread(target=checks, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            stopping.set()
            server.shutdown()
            server.server_close()
            for thread in threads:
                thread.join(timeout=5)

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        calls = list(self.calls)
        return [c for c in calls if c.method == method and c.path.startswith(path_prefix)]


def _service(fields: dict[str, Any]) -> dict[str, Any]:
    """A service entry with the fields Consul always sends (enterprise ones empty)."""
    return {
        "Kind": "",
        "TaggedAddresses": {},
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
        "Namespace": "",
        "Partition": "",
        "Meta": {},
        **fields,
    }


def probe(url: str, method: str, timeout_s: float) -> tuple[str, str]:
    """An HTTP check as Consul runs it: 2xx passes, 429 warns, anything else is critical."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return "passing", f"HTTP {method} {url}: {response.status}"
    except urllib.error.HTTPError as error:
        status = "warning" if error.code == 429 else "critical"
        return status, f"HTTP {method} {url}: {error.code}"
    except OSError as error:
        return "critical", f"HTTP {method} {url}: {error}"
