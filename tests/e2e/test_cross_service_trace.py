"""One request through the API gateway and three baked services, HTTP and the broker, as one
trace in a real Jaeger.

The request enters through the gateway (gateway/Caddyfile, its route table as shipped), whose
server span is the first of the trace; storefront (messaging none), reached at /storefront/,
relays the POST to orders' /events through its resilient client;
orders publishes the event on the broker (NATS, then RabbitMQ); shipping consumes it and calls
the storefront back over HTTP, the caller's baggage travelling all the way. All run as real
processes and export their spans to a real Jaeger v2 running observability/jaeger/config.yaml
(addresses aside): storefront and shipping over OTLP/gRPC, orders and the gateway over
OTLP/HTTP. The trace is read back through Jaeger's query API, the one its UI calls, and found
again by the UI's search.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import OTLP_PROTOCOLS, Cluster, running_cluster, trace_tree
from tests.net import port_open
from tests.stack.programs import Jaeger, JaegerSpan, run_jaeger, send_client_span, wait_until

pytestmark = [pytest.mark.bake, pytest.mark.xdist_group("e2e")]

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
SERVICES = ("storefront", "orders", "shipping")
GATEWAY = "gateway"  # the API gateway's OTEL_SERVICE_NAME
CLIENT_NAME = "e2e-client"  # the test's own root span
# As a caller sends it: a property on k2, an encoded space in k3; k1 and k3 are on the
# services' BAGGAGE_ATTRIBUTES allow-list (cluster.py), k2 is not.
BAGGAGE = "k1=v1,k2=v2;prop,k3=a%20b"
BROKERS = {
    "nats": (os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222"), 4222, "nats-server -js"),
    "rabbitmq": (
        os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        5672,
        "rabbitmq-server -detached",
    ),
}


@pytest.fixture(scope="module")
def jaeger(
    stack_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Jaeger]:
    with run_jaeger(stack_binaries["jaeger"], tmp_path_factory.mktemp("jaeger")) as running:
        yield running


@pytest.fixture(scope="module", params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def cluster(
    broker: str,
    jaeger: Jaeger,
    stack_binaries: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    url, port, start = BROKERS[broker]
    if not port_open(port):
        pytest.fail(f"no {broker} broker on 127.0.0.1:{port}: start one ({start}), as .ci/run does")
    with running_cluster(
        tmp_path_factory.mktemp("e2e"),
        url,
        jaeger,
        broker=broker,
        gateway_binary=stack_binaries["caddy"],
    ) as running:
        yield running


@pytest.fixture(scope="module")
def request_ids(broker: str) -> tuple[str, str]:
    """A trace id and a root span id per broker: both runs share one Jaeger."""
    return secrets.token_hex(16), secrets.token_hex(8)


@pytest.fixture(scope="module")
def spans(cluster: Cluster, request_ids: tuple[str, str]) -> list[JaegerSpan]:
    trace_id, root_span = request_ids
    start_ns = time.time_ns()
    assert cluster.gateway is not None
    response = httpx.post(
        cluster.gateway.url + "/storefront/downstream",
        json={"type": "order.placed", "data": {"order": 7}},
        headers={"traceparent": f"00-{trace_id}-{root_span}-01", "baggage": BAGGAGE},
        timeout=10,
    )
    send_client_span(
        cluster.jaeger,
        CLIENT_NAME,
        trace_id,
        root_span,
        start_ns,
        time.time_ns(),
        response.status_code,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == 202

    def complete() -> list[JaegerSpan]:
        """The trace once its last spans (shipping's call back to the storefront) are in."""
        found = cluster.trace(trace_id)
        has_consumer = any(s.service == "shipping" and s.kind == CONSUMER for s in found)
        has_callback = any(
            (s.service, s.kind, s.name) == ("storefront", SERVER, "GET /items/{item_id}")
            for s in found
        )
        return found if has_consumer and has_callback else []

    wait_until("the whole trace in Jaeger", complete, timeout=30)
    time.sleep(1)  # the last client and consumer spans end just after the callback
    return cluster.trace(trace_id)


def one(spans: list[JaegerSpan], suffix: str = "", **where: Any) -> JaegerSpan:
    found = [
        s
        for s in spans
        if s.name.endswith(suffix) and all(getattr(s, k) == v for k, v in where.items())
    ]
    assert len(found) == 1, (where, [(s.service, s.name) for s in spans])
    return found[0]


def ancestors(spans: list[JaegerSpan], span: JaegerSpan) -> list[JaegerSpan]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


def test_every_span_has_the_parent_that_caused_it(
    spans: list[JaegerSpan], request_ids: tuple[str, str]
) -> None:
    trace_id, root_span = request_ids
    print(trace_tree(spans, trace_id))
    edge = one(spans, service=GATEWAY, kind=SERVER, name="POST /storefront/*")
    assert edge.parent_span_id == root_span
    entry = one(spans, service="storefront", kind=SERVER, name="POST /downstream")
    assert entry.parent_span_id == edge.span_id
    publish_request = one(spans, service="orders", kind=SERVER, name="POST /events")
    relay = next(s for s in spans if s.span_id == publish_request.parent_span_id)
    assert (relay.service, relay.kind) == ("storefront", CLIENT)
    assert entry in ancestors(spans, relay)

    # One "send" span for the message; on the consumer side a "process" span that is its
    # child and links to it (messaging conventions).
    send = one(spans, service="orders", kind=PRODUCER)
    assert publish_request in ancestors(spans, send)
    process = one(spans, service="shipping", kind=CONSUMER)
    # The service exports both a parent and a link to the send span (the chassis's
    # tests/messaging/test_trace.py reads them from OTLP); Jaeger's query API shows the
    # pair as one FOLLOWS_FROM reference, which its UI draws as the parent.
    assert process.links == [(trace_id, send.span_id)]
    assert process.parent_span_id in {"", send.span_id}

    callback = one(spans, service="storefront", kind=SERVER, name="GET /items/{item_id}")
    call = next(s for s in spans if s.span_id == callback.parent_span_id)
    assert (call.service, call.kind) == ("shipping", CLIENT)
    assert process in ancestors(spans, call)

    # shipping records the event in its inbox, in the transaction its handler runs in.
    inbox = one(spans, service="shipping", kind=CLIENT, name="INSERT inbox")
    assert process in ancestors(spans, inbox)

    # Every span has its parent in the trace, up to the caller's: nothing was lost on the way.
    ids = {s.span_id for s in spans}
    (root,) = [
        s
        for s in spans
        if s.parent_span_id not in ids and not any(linked in ids for _, linked in s.links)
    ]
    assert (root.service, root.span_id, root.kind) == (CLIENT_NAME, root_span, CLIENT)
    assert {s.service for s in spans} == {*SERVICES, GATEWAY, CLIENT_NAME}
    # The gateway's is the only span of its own: the callback goes from service to service.
    assert [s.name for s in spans if s.service == GATEWAY] == ["POST /storefront/*"]


def test_spans_follow_the_semantic_conventions(
    spans: list[JaegerSpan], cluster: Cluster, broker: str
) -> None:
    for span in spans:
        if span.service in (CLIENT_NAME, GATEWAY):  # the gateway's span: test_stack_gateway
            continue
        # The allowed baggage keys on every span of every service, decoded; the others not.
        assert (span.attributes.get("k1"), span.attributes.get("k3")) == ("v1", "a b"), span.name
        assert "k2" not in span.attributes
        if span.kind == SERVER:
            assert span.attributes["http.request.method"] in {"GET", "POST"}
            assert span.attributes["http.route"].startswith("/")
            assert isinstance(span.attributes["http.response.status_code"], int)
            # TRACE_CONNECTION_ATTRIBUTES: the recommended ones too.
            assert span.attributes["server.address"] == "127.0.0.1"
            # The Host the client used: the gateway's for the request it passed on.
            assert cluster.gateway is not None
            ports = {cluster[span.service].port, cluster.gateway.port}
            assert span.attributes["server.port"] in ports
            assert span.attributes["client.address"] == "127.0.0.1"
            assert span.attributes["network.protocol.version"] == "1.1"
            assert span.attributes["user_agent.original"]
        elif span.kind == CLIENT and "db.system.name" in span.attributes:
            # The stable database conventions (semantic conventions 1.33+).
            assert span.attributes["db.system.name"] == "postgresql"
            assert span.attributes["db.namespace"].startswith("e2e_shipping")
            assert span.attributes["db.query.summary"] == span.name
            assert span.attributes["server.address"] == "127.0.0.1"
            assert "db.operation.name" in span.attributes
        elif span.kind == CLIENT:
            assert span.attributes["http.request.method"] in {"GET", "POST"}
            assert span.attributes["server.address"] == "127.0.0.1"
            assert span.attributes["url.full"].startswith("http://127.0.0.1:")
            assert "http.response.status_code" in span.attributes
        elif span.kind == PRODUCER:
            assert span.name == f"publish {cluster.destination}"
            assert span.attributes["messaging.system"] == broker
            assert span.attributes["messaging.operation.type"] == "send"
            assert span.attributes["messaging.operation.name"] == "publish"
            assert span.attributes["messaging.destination.name"] == cluster.destination
            assert span.attributes["messaging.message.id"]
        elif span.kind == CONSUMER:
            assert span.name == f"process {cluster.destination}"
            assert span.attributes["messaging.system"] == broker
            assert span.attributes["messaging.operation.type"] == "process"
            assert span.attributes["messaging.operation.name"] == "process"
            assert span.attributes["messaging.destination.name"] == cluster.destination
            assert span.attributes["messaging.message.id"]
            # Each consuming service is a group of its own (its name, by default).
            if broker == "nats":  # the durable consumer is the group
                assert span.attributes["messaging.consumer.group.name"] == span.service
            else:  # RabbitMQ has no groups: the group's queue is the subscription
                subscription = span.attributes["messaging.destination.subscription.name"]
                assert subscription == f"{cluster.destination}.{span.service}"


def test_each_service_describes_itself_in_its_resource(spans: list[JaegerSpan]) -> None:
    for span in spans:
        if span.service == GATEWAY:
            assert span.resource["webengine.name"] == "Caddy"
            assert span.resource["telemetry.sdk.language"] == "go"
            continue
        if span.service == CLIENT_NAME:
            continue
        assert span.resource["service.version"] == "0.1.0", span.service
        assert span.resource["service.owner"], span.service
        assert span.resource["telemetry.sdk.language"] == "python", span.service


def test_jaegers_search_finds_the_trace(
    spans: list[JaegerSpan], jaeger: Jaeger, request_ids: tuple[str, str], broker: str
) -> None:
    """What a user does in the UI: pick a service, an operation, tags; find the trace."""
    trace_id = request_ids[0]
    assert set(jaeger.services()) >= {*SERVICES, GATEWAY}
    for service in (*SERVICES, GATEWAY):
        operations = jaeger.operations(service)
        assert {s.name for s in spans if s.service == service} <= set(operations), service

    assert trace_id in jaeger.search(GATEWAY, "POST /storefront/*")
    assert trace_id in jaeger.search(GATEWAY, tags={"http.route": "/storefront/*"})
    assert trace_id in jaeger.search("storefront", "POST /downstream")
    assert trace_id in jaeger.search(
        "storefront", "POST /downstream", tags={"http.response.status_code": 200}
    )
    assert trace_id in jaeger.search("orders", tags={"http.route": "/events"})
    assert trace_id in jaeger.search(
        "shipping", tags={"messaging.system": broker, "messaging.operation.type": "process"}
    )
    callback = one(spans, service="storefront", kind=SERVER, name="GET /items/{item_id}")
    assert trace_id in jaeger.search(
        "storefront",
        "GET /items/{item_id}",
        tags={"http.response.status_code": callback.attributes["http.response.status_code"]},
    )
    # A tag the trace does not have finds other traces only.
    assert trace_id not in jaeger.search(
        "storefront", "POST /downstream", tags={"http.response.status_code": 599}
    )


def test_spans_came_over_both_otlp_transports(spans: list[JaegerSpan], jaeger: Jaeger) -> None:
    """Jaeger's own receiver metrics count spans per transport: gRPC and HTTP both carried."""
    url = f"http://127.0.0.1:{jaeger.ports.telemetry}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    accepted: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"otelcol_receiver_accepted_spans(?:_total)?\{([^}]*)\} (\S+)", line)
        if match and 'receiver="otlp"' in match.group(1):
            transport = re.search(r'transport="([^"]+)"', match.group(1))
            assert transport, line
            accepted[transport.group(1)] = accepted.get(transport.group(1), 0) + float(
                match.group(2)
            )
    assert set(OTLP_PROTOCOLS.values()) == {"grpc", "http/protobuf"}
    assert accepted.get("grpc", 0) > 0, accepted
    assert accepted.get("http", 0) > 0, accepted


def test_the_trace_has_no_warnings_in_jaeger(
    cluster: Cluster, spans: list[JaegerSpan], request_ids: tuple[str, str]
) -> None:
    """Jaeger flags missing parents, invalid spans and clock skew as warnings on the trace.

    Clock skew is tolerated: a server span ends after its access-log line is written, once
    the response has been sent, so on loopback it may end a few milliseconds after the
    caller's client span, which Jaeger reports as skew it does not adjust.
    """
    (trace,) = cluster.jaeger.api(f"/traces/{request_ids[0]}")
    warnings = {
        f"{trace['processes'][span['processID']]['serviceName']} {span['operationName']}": [
            warning for warning in span["warnings"] if not warning.startswith("clock skew")
        ]
        for span in trace["spans"]
        if span.get("warnings")
    }
    assert {span: found for span, found in warnings.items() if found} == {}, json.dumps(
        warnings, indent=1
    )


def test_each_service_logged_the_trace(
    spans: list[JaegerSpan], cluster: Cluster, request_ids: tuple[str, str]
) -> None:
    for name in SERVICES:
        logged = [line for line in cluster[name].logs() if line.get("trace_id") == request_ids[0]]
        assert logged, f"{name} wrote no log line with the trace id"
        assert all(line["service"] == name for line in logged)
        # BAGGAGE_ATTRIBUTES: the allowed keys on the lines written inside the trace.
        assert all((line["k1"], line["k3"]) == ("v1", "a b") for line in logged), name
        assert not any("k2" in line for line in logged)
    # The gateway's access log: one line for the one request it passed on.
    assert cluster.gateway is not None
    (line,) = [e for e in cluster.gateway.logs() if e.get("trace_id") == request_ids[0]]
    assert (line["service"], line["status"]) == (GATEWAY, 200)
    assert line["request"]["uri"] == "/storefront/downstream"


def test_the_consul_registration_was_live(spans: list[JaegerSpan], cluster: Cluster) -> None:
    def passing() -> list[dict[str, Any]]:
        return cluster.consul.health_service("shipping", passing=True, tags=[])

    (entry,) = wait_until("shipping's Consul check to pass", passing, timeout=15)
    assert entry["Service"]["Port"] == cluster["shipping"].port
    assert entry["Service"]["Meta"]["metrics_path"] == "/metrics"


def test_each_service_counted_it(spans: list[JaegerSpan], cluster: Cluster) -> None:
    def metrics(name: str) -> str:
        return httpx.get(cluster[name].url + "/metrics", timeout=5).text

    storefront, orders, shipping = metrics("storefront"), metrics("orders"), metrics("shipping")
    assert 'http_route="/downstream"' in storefront
    assert 'http_route="/items/{item_id}"' in storefront
    assert 'http_route="/events"' in orders
    # The messaging metrics of the current conventions.
    assert "messaging_client_sent_messages_total{" in orders
    assert "messaging_client_operation_duration_seconds_bucket{" in orders
    assert "messaging_client_consumed_messages_total{" in shipping
    assert "messaging_process_duration_seconds_bucket{" in shipping
    outbound = [
        line
        for line in shipping.splitlines()
        if line.startswith("http_client_request_duration_seconds_count")
    ]
    assert any(
        'http_request_method="GET"' in line and 'server_address="127.0.0.1"' in line
        for line in outbound
    )


def test_services_stop_cleanly(cluster: Cluster, spans: list[JaegerSpan]) -> None:
    for service in cluster.services.values():
        assert service.stop() == 0, "".join(service.lines[-20:])
    assert cluster.gateway is not None
    assert cluster.gateway.stop() == 0, cluster.gateway.runtime_log.read_text()[-2000:]
    # Shutdown deregisters the Consul instance.
    assert cluster.consul.health_service("shipping", passing=False, tags=[]) == []
