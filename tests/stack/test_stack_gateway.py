"""The API gateway (gateway/Caddyfile, as shipped) in front of a real baked service.

The gateway is the Caddy scripts/install-stack.sh builds from gateway/ at the compose file's
version; behind it runs a service baked from this template (messaging none) as a real process,
and the gateway's spans go to a real Jaeger. The route table is the shipped one: /storefront
(public) and /orders (bearer token) both lead to the baked service; /shipping (bearer token)
to a server that accepts connections and never answers (the 504). Two routes are added for
the test in the table's own syntax: /down, whose upstream port is closed (the 502), and
/limited, with a rate limit small enough to reach in a bounded burst.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cookiecutter.main import cookiecutter

from tests.e2e.cluster import TEMPLATE, Service
from tests.net import free_port
from tests.stack.gateway import JWT_SECRET, Gateway, jwt, run_gateway
from tests.stack.programs import Jaeger, JaegerSpan, run_jaeger, wait_until

pytestmark = [pytest.mark.bake, pytest.mark.xdist_group("gateway")]

SERVER = 2
LIMIT, WINDOW_SECONDS = 5, 30
MANAGEMENT_PATHS = ("/metrics", "/health/live", "/health/ready", "/docs", "/openapi.json")


@pytest.fixture(scope="module")
def jaeger(jaeger_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    with run_jaeger(jaeger_binary, tmp_path_factory.mktemp("jaeger")) as running:
        yield running


@pytest.fixture(scope="module")
def service(jaeger: Jaeger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context={"service_name": "storefront", "messaging": "none", "discovery": "none"},
        output_dir=str(tmp_path_factory.mktemp("bake")),
    )
    baked = Service(
        "storefront",
        Path(project),
        free_port(),
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "LOG_LEVEL": "INFO",
        },
    )
    baked.start()
    try:
        baked.wait_ready()
        yield baked
    finally:
        baked.stop()


@pytest.fixture(scope="module")
def silent_upstream() -> Iterator[int]:
    """A server that accepts connections and never answers a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


@pytest.fixture(scope="module")
def gateway(
    stack_binaries: dict[str, Path],
    jaeger: Jaeger,
    service: Service,
    silent_upstream: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    closed = free_port()  # nothing listens there
    upstream = f"127.0.0.1:{service.port}"
    extra = (
        f"import api /down {{$DOWN_UPSTREAM:127.0.0.1:{closed}}} public 600 1m\n"
        f"import api /limited {{$LIMITED_UPSTREAM:{upstream}}} public {LIMIT} {WINDOW_SECONDS}s\n"
    )
    with run_gateway(
        stack_binaries["caddy"],
        tmp_path_factory.mktemp("gateway"),
        {
            "storefront": upstream,
            "orders": upstream,
            "shipping": f"127.0.0.1:{silent_upstream}",
        },
        jaeger,
        env={"GATEWAY_UPSTREAM_TIMEOUT": "1s"},
        extra_routes=extra,
    ) as running:
        yield running


def token(**claims: Any) -> str:
    now = int(time.time())
    return jwt({"sub": "client-7", "iat": now, "exp": now + 300, **claims})


def traceparent() -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def assert_problem(
    response: httpx.Response, status: int, instance: str, trace_id: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem shaped like the services' own (which may add extensions)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "instance", "trace_id"}
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["instance"] == instance
    assert body["title"]
    assert body["detail"]
    assert len(body["trace_id"]) == 32
    if trace_id is not None:
        assert body["trace_id"] == trace_id
    return body


# --- routing -------------------------------------------------------------------------------


def test_a_route_reaches_its_service_with_the_prefix_stripped(gateway: Gateway) -> None:
    answer = httpx.get(gateway.url + "/storefront/items/1", timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == 1
    created = httpx.post(
        gateway.url + "/storefront/items", json={"name": "lamp", "quantity": 2}, timeout=5
    )
    assert created.status_code == 201, created.text
    # The service's own problems pass through unchanged, its trace id included.
    trace_id, _, header = traceparent()
    missing = httpx.get(
        gateway.url + "/storefront/items/999", headers={"traceparent": header}, timeout=5
    )
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "urn:problem:item-not-found"  # the service's, not the edge's
    assert missing.json()["trace_id"] == trace_id


def test_an_unknown_route_is_a_404_problem(gateway: Gateway) -> None:
    trace_id, _, header = traceparent()
    for path in ("/", "/nowhere/items/1", "/storefront", "/items/1"):
        answer = httpx.get(gateway.url + path, headers={"traceparent": header}, timeout=5)
        body = assert_problem(answer, 404, path, trace_id)
        assert body["detail"] == "No API route matches this path."


@pytest.mark.parametrize("path", MANAGEMENT_PATHS)
def test_management_endpoints_stay_inside(gateway: Gateway, service: Service, path: str) -> None:
    # The service has them ...
    assert httpx.get(service.url + path, timeout=5).status_code == 200
    # ... and the gateway does not pass them on, under any route.
    for prefix in ("/storefront", "/orders", "/limited"):
        answer = httpx.get(gateway.url + prefix + path, timeout=5)
        assert_problem(answer, 404, prefix + path)


@pytest.mark.parametrize(
    "path",
    [
        "/storefront//metrics",
        "/storefront/%6Detrics",
        "/storefront/METRICS",
        "/storefront/./metrics",
        "/storefront/items/../metrics",
        "/storefront/items/%2e%2e/health/ready",
        "/storefront/%2Fmetrics",
        "/storefront/metrics/",
        "/storefront/openapi.json/",
        "/storefront/docs/",
        "/storefront/health/live?probe=1",
    ],
)
def test_management_endpoints_stay_inside_however_the_path_is_spelt(
    gateway: Gateway, path: str
) -> None:
    """Sent as written (no client-side normalisation): the gateway refuses them all itself."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 404, body
    assert response.getheader("content-type") == "application/problem+json"
    assert body["detail"] == "No API route matches this path."


def test_the_gateways_own_management_port_is_not_a_route(gateway: Gateway) -> None:
    live = httpx.get(gateway.management_url + "/health/live", timeout=5)
    assert live.status_code == 200
    assert live.headers["content-type"] == "application/health+json"
    metrics = httpx.get(gateway.management_url + "/metrics", timeout=5).text
    assert "caddy_http_requests_total" in metrics
    assert httpx.get(gateway.url + "/health/live", timeout=5).status_code == 404
    assert httpx.get(gateway.management_url + "/storefront/items/1", timeout=5).status_code == 404


# --- bearer tokens -------------------------------------------------------------------------


def test_a_valid_token_passes(gateway: Gateway) -> None:
    bearer = token()
    answer = httpx.get(
        gateway.url + "/orders/items/1", headers={"authorization": f"Bearer {bearer}"}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    line = wait_until(
        "the access log line",
        lambda: [
            entry
            for entry in gateway.logs()
            if entry["request"]["uri"] == "/orders/items/1" and entry["status"] == 200
        ],
    )
    assert line[-1]["user_id"] == "client-7"
    assert bearer not in gateway.access_log.read_text()  # Caddy redacts the header


def refused_authorization(why: str) -> str | None:
    """An Authorization header the gateway must refuse, made when the test runs (a token's
    times are relative to now)."""
    later = int(time.time()) + 300
    return {
        "no token": None,
        "not bearer": "Basic dXNlcjpwYXNz",
        "expired": f"Bearer {token(exp=int(time.time()) - 120)}",
        "no expiry": "Bearer " + jwt({"sub": "client-7"}),
        "forged": "Bearer " + jwt({"sub": "x", "exp": later}, "f" * 40),
        "unsigned": "Bearer " + jwt({"sub": "x", "exp": later}, alg="none"),
        "garbage": "Bearer not.a.token",
    }[why]


@pytest.mark.parametrize(
    "why", ["no token", "not bearer", "expired", "no expiry", "forged", "unsigned", "garbage"]
)
def test_a_route_that_asks_for_a_token_refuses_without_a_valid_one(
    gateway: Gateway, why: str
) -> None:
    authorization = refused_authorization(why)
    trace_id, _, header = traceparent()
    headers = {"traceparent": header}
    if authorization:
        headers["authorization"] = authorization
    answer = httpx.get(gateway.url + "/orders/items/1", headers=headers, timeout=5)
    assert_problem(answer, 401, "/orders/items/1", trace_id)
    assert answer.headers["www-authenticate"].startswith("Bearer "), why
    assert JWT_SECRET not in answer.text


def test_public_routes_need_no_token(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/storefront/items/1", timeout=5).status_code == 200


# --- rate limit ----------------------------------------------------------------------------


def test_a_client_over_its_rate_limit_gets_429_with_retry_after(gateway: Gateway) -> None:
    """A bounded burst on loopback: LIMIT requests pass, the next ones are refused."""
    trace_id, _, header = traceparent()
    statuses = []
    refused = []
    with httpx.Client(timeout=5) as client:
        for _ in range(LIMIT + 3):
            answer = client.get(gateway.url + "/limited/items/1", headers={"traceparent": header})
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                refused.append(answer)
    assert statuses == [200] * LIMIT + [429] * 3
    for answer in refused:
        assert_problem(answer, 429, "/limited/items/1", trace_id)
        assert 1 <= int(answer.headers["retry-after"]) <= WINDOW_SECONDS + 1
    # The limit is per route: the others still answer.
    assert httpx.get(gateway.url + "/storefront/items/1", timeout=5).status_code == 200


# --- upstream failures ---------------------------------------------------------------------


def test_an_upstream_that_is_down_is_a_502_problem(gateway: Gateway) -> None:
    trace_id, _, header = traceparent()
    answer = httpx.get(gateway.url + "/down/items/1", headers={"traceparent": header}, timeout=10)
    body = assert_problem(answer, 502, "/down/items/1", trace_id)
    # What failed, never why in detail: no dial error, address or port for the client.
    assert "dial" not in body["detail"]
    assert "127.0.0.1" not in answer.text
    logged = wait_until(
        "the 502's access log line",
        lambda: [e for e in gateway.logs() if e.get("trace_id") == trace_id],
    )
    assert logged[-1]["status"] == 502
    assert "connect" in logged[-1]["error"] or "dial" in logged[-1]["error"]


def test_an_upstream_that_does_not_answer_in_time_is_a_504_problem(gateway: Gateway) -> None:
    trace_id, _, header = traceparent()
    started = time.monotonic()
    answer = httpx.get(
        gateway.url + "/shipping/items/1",
        headers={"traceparent": header, "authorization": f"Bearer {token()}"},
        timeout=15,
    )
    assert_problem(answer, 504, "/shipping/items/1", trace_id)
    # GATEWAY_UPSTREAM_TIMEOUT is 1 s here.
    assert time.monotonic() - started < 5


# --- tracing and logs ----------------------------------------------------------------------


def test_the_gateway_span_continues_the_callers_trace_and_parents_the_service(
    gateway: Gateway, jaeger: Jaeger
) -> None:
    trace_id, parent, header = traceparent()
    answer = httpx.get(
        gateway.url + "/storefront/items/1", headers={"traceparent": header}, timeout=5
    )
    assert answer.status_code == 200

    def both() -> list[JaegerSpan]:
        spans = jaeger.trace(trace_id)
        return spans if {s.service for s in spans} >= {"gateway", "storefront"} else []

    spans = wait_until("the gateway's and the service's spans in Jaeger", both, timeout=20)
    (edge,) = [s for s in spans if s.service == "gateway"]
    assert (edge.kind, edge.name, edge.parent_span_id) == (SERVER, "GET /storefront/*", parent)
    assert edge.attributes["http.route"] == "/storefront/*"
    assert edge.attributes["http.response.status_code"] == 200
    assert edge.attributes["url.path"] == "/storefront/items/1"
    assert edge.resource["webengine.name"] == "Caddy"
    (inside,) = [s for s in spans if s.service == "storefront" and s.kind == SERVER]
    assert inside.name == "GET /items/{item_id}"
    assert inside.parent_span_id == edge.span_id


def test_refusals_are_spans_with_their_status(gateway: Gateway, jaeger: Jaeger) -> None:
    """The span ends after the problem is written, so it carries the refusal's status."""
    trace_id, _, header = traceparent()
    httpx.get(gateway.url + "/down/items/1", headers={"traceparent": header}, timeout=10)
    httpx.get(gateway.url + "/nowhere", headers={"traceparent": header}, timeout=10)

    def both() -> dict[str, JaegerSpan]:
        spans = {s.name: s for s in jaeger.trace(trace_id)}
        return spans if len(spans) == 2 else {}

    by_name = wait_until("the refusals' spans", both, timeout=20)
    assert by_name["GET /down/*"].attributes["http.response.status_code"] == 502
    assert by_name["GET /down/*"].status_code == "ERROR"
    assert by_name["GET unmatched"].attributes["http.response.status_code"] == 404


def test_one_json_log_line_per_request_with_the_trace_id(gateway: Gateway) -> None:
    trace_id, _, header = traceparent()
    httpx.get(gateway.url + "/storefront/items/1", headers={"traceparent": header}, timeout=5)
    lines = wait_until(
        "the access log line",
        lambda: [e for e in gateway.logs() if e.get("trace_id") == trace_id],
    )
    assert len(lines) == 1
    (line,) = lines
    assert line["service"] == "gateway"
    assert line["event"] == "handled request"
    assert line["level"] == "info"
    assert line["status"] == 200
    assert len(line["span_id"]) == 16
    assert line["timestamp"].endswith("Z")
