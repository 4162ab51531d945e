"""A stand-in for a Consul agent's HTTP API, on loopback, for the discovery tests.

Consul does not install here (no PyPI package, no Debian package), so the tests talk to this
server instead. It implements only the endpoints the service calls, and checks each request
against Consul's documented HTTP API (v1): the fields ``PUT /v1/agent/service/register``
accepts and their types, the metadata rules, the duration syntax, the ACL token header, and
the shape of ``GET /v1/health/service/:service`` answers. A request Consul would refuse gets
a 400 here too, so a payload mistake fails the test instead of passing silently.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from service_chassis.testing.servers import QuietServer

# Top-level fields of a service definition (Consul docs: Agent HTTP API, "Register Service").
SERVICE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "Name": str,
    "ID": str,
    "Tags": list,
    "Address": str,
    "TaggedAddresses": dict,
    "Meta": dict,
    "Port": int,
    "Kind": str,
    "Proxy": dict,
    "Connect": dict,
    "Check": dict,
    "Checks": list,
    "EnableTagOverride": bool,
    "Weights": dict,
    "Namespace": str,
    "Partition": str,
}
# Fields of a check inside a service definition (Consul docs: "Checks", HTTP checks).
CHECK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "Name": str,
    "CheckID": str,
    "Notes": str,
    "Status": str,
    "HTTP": str,
    "Method": str,
    "Header": dict,
    "Body": str,
    "Interval": str,
    "Timeout": str,
    "TLSServerName": str,
    "TLSSkipVerify": bool,
    "DeregisterCriticalServiceAfter": str,
    "SuccessBeforePassing": int,
    "FailuresBeforeWarning": int,
    "FailuresBeforeCritical": int,
    "TCP": str,
    "TTL": str,
}
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def problems_with_registration(body: Any) -> list[str]:
    """What Consul would refuse in a registration body; empty when it is acceptable."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    found = _typed(body, SERVICE_FIELDS, "service")
    if not body.get("Name"):
        found.append("Name is required")
    if not all(isinstance(tag, str) for tag in body.get("Tags", [])):
        found.append("Tags must be strings")
    meta = body.get("Meta", {})
    if len(meta) > 64:
        found.append("Meta has more than 64 pairs")
    for key, value in meta.items():
        if not META_KEY.match(key) or key.startswith("consul-"):
            found.append(f"Meta key {key!r} is not allowed")
        if not isinstance(value, str) or len(value) > 512:
            found.append(f"Meta value for {key!r} must be a string of at most 512 characters")
    check = body.get("Check")
    if isinstance(check, dict):
        found += _typed(check, CHECK_FIELDS, "check")
        for name in ("Interval", "Timeout", "DeregisterCriticalServiceAfter", "TTL"):
            if name in check and not DURATION.match(str(check[name])):
                found.append(f"check {name} {check[name]!r} is not a duration")
        if "HTTP" in check and "Interval" not in check:
            found.append("an HTTP check needs an Interval")
    return found


def _typed(
    body: dict[str, Any], fields: dict[str, type | tuple[type, ...]], what: str
) -> list[str]:
    found = []
    for key, value in body.items():
        if key not in fields:
            found.append(f"unknown {what} field {key!r}")
        elif not isinstance(value, fields[key]) or isinstance(value, bool) != (fields[key] is bool):
            found.append(f"{what} field {key!r} has the wrong type")
    return found


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class FakeConsul:
    url: str = ""
    token: str | None = None  # when set, calls without this X-Consul-Token get 403
    fail_status: int | None = None  # answer every call with this status
    delay: float = 0.0  # wait this long before answering
    node_address: str = "127.0.0.1"
    # service id -> registration body, as the agent holds them
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    # service id -> check status ("passing", "warning", "critical")
    status: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_instance(
        self, name: str, address: str, port: int, *, status: str = "passing", service_id: str = ""
    ) -> str:
        service_id = service_id or f"{name}-{address}-{port}"
        with self.lock:
            self.services[service_id] = {
                "ID": service_id,
                "Name": name,
                "Address": address,
                "Port": port,
            }
            self.status[service_id] = status
        return service_id

    def calls_to(self, method: str, prefix: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(prefix)]

    def wait_for(
        self, method: str, prefix: str, count: int = 1, timeout: float = 5.0
    ) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.calls_to(method, prefix)
            if len(calls) >= count:
                return calls
            time.sleep(0.01)
        raise AssertionError(f"expected {count} {method} {prefix} calls, got {self.calls}")

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "PUT" and path == "/v1/agent/service/register":
            problems = problems_with_registration(body)
            if problems:
                return 400, "; ".join(problems)
            service_id = body.get("ID") or body["Name"]
            with self.lock:
                self.services[service_id] = body
                # A new check starts critical unless the definition says otherwise.
                self.status[service_id] = body.get("Check", {}).get("Status", "critical")
            return 200, None
        if method == "PUT" and path.startswith("/v1/agent/service/deregister/"):
            service_id = unquote(path.rsplit("/", 1)[1])
            with self.lock:
                if self.services.pop(service_id, None) is None:
                    return 404, f'Unknown service ID "{service_id}"'
                self.status.pop(service_id, None)
            return 200, None
        if method == "GET" and path.startswith("/v1/agent/service/"):
            service_id = unquote(path.rsplit("/", 1)[1])
            with self.lock:
                service = self.services.get(service_id)
            if service is None:
                return 404, f"unknown service ID: {service_id}"
            return 200, {"ID": service_id, "Service": service["Name"], **service}
        if method == "GET" and path.startswith("/v1/health/service/"):
            return 200, self._health(unquote(path.rsplit("/", 1)[1]))
        return 405, "method or path not implemented by the fake"

    def _health(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            entries = []
            for service_id, service in self.services.items():
                if service["Name"] != name:
                    continue
                entries.append(
                    {
                        "Node": {
                            "Node": "node-1",
                            "Address": self.node_address,
                            "Datacenter": "dc1",
                        },
                        "Service": {
                            "ID": service_id,
                            "Service": name,
                            "Tags": service.get("Tags", []),
                            "Address": service.get("Address", ""),
                            "Meta": service.get("Meta", {}),
                            "Port": service.get("Port", 0),
                        },
                        "Checks": [
                            {
                                "Node": "node-1",
                                "CheckID": f"service:{service_id}",
                                "Status": self.status.get(service_id, "critical"),
                                "ServiceID": service_id,
                                "ServiceName": name,
                            }
                        ],
                    }
                )
            return entries


def _handler(state: FakeConsul) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            query = parse_qs(url.query)
            with state.lock:
                state.calls.append(
                    Call(
                        method,
                        url.path,
                        query,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
            if state.delay:
                time.sleep(state.delay)
            if state.fail_status is not None:
                self._reply(state.fail_status, "Unexpected response code: injected failure")
                return
            if state.token is not None and self.headers.get("x-consul-token") != state.token:
                self._reply(403, "Permission denied: token not found")
                return
            status, answer = state.answer(method, url.path, body)
            if status == 200 and query.get("passing") == ["true"] and isinstance(answer, list):
                answer = [e for e in answer if all(c["Status"] == "passing" for c in e["Checks"])]
            self._reply(status, answer)

        def _reply(self, status: int, answer: Any) -> None:
            if isinstance(answer, str):
                payload, kind = answer.encode(), "text/plain; charset=utf-8"
            else:
                payload, kind = json.dumps(answer).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(payload)))
                self.send_header("x-consul-index", "1")
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up waiting (timeout tests)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def run_fake_consul() -> Iterator[FakeConsul]:
    state = FakeConsul()
    server = QuietServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.delay = 0.0
        server.shutdown()
        server.server_close()
