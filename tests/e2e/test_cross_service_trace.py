"""One request across three baked services, HTTP and NATS, as one trace.

gateway (messaging none) relays a POST to orders' /events through its resilient client;
orders publishes the event on NATS; shipping consumes it and calls the gateway back over HTTP.
All run as real processes and export over real OTLP to a receiver in this test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, running_cluster, trace_tree
from tests.net import port_open

pytestmark = [pytest.mark.bake, pytest.mark.xdist_group("e2e")]

TRACE_ID = "5b8efff798038103d269b633813fc60c"
ROOT_SPAN = "eee19b7ec3c1b174"
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
BROKERS = {
    "nats": (os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222"), 4222, "nats-server -js"),
    "rabbitmq": (
        os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        5672,
        "rabbitmq-server -detached",
    ),
}


@pytest.fixture(scope="module", params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def cluster(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url, port, start = BROKERS[broker]
    if not port_open(port):
        pytest.fail(f"no {broker} broker on 127.0.0.1:{port}: start one ({start}), as .ci/run does")
    with running_cluster(tmp_path_factory.mktemp("e2e"), url, broker=broker) as running:
        yield running


@pytest.fixture(scope="module")
def spans(cluster: Cluster) -> list[Any]:
    response = httpx.post(
        cluster["gateway"].url + "/downstream",
        json={"type": "order.placed", "data": {"order": 7}},
        headers={"traceparent": f"00-{TRACE_ID}-{ROOT_SPAN}-01", "baggage": "tenant=acme"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == 202
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        received = [span for span in cluster.receiver.spans if span.trace_id == TRACE_ID]
        if any(
            span.service == "gateway" and span.name == "GET /items/{item_id}" for span in received
        ):
            time.sleep(0.5)  # the last client and consumer spans end just after
            return [span for span in cluster.receiver.spans if span.trace_id == TRACE_ID]
        time.sleep(0.1)
    raise AssertionError("the callback from shipping never reached the gateway")


def one(spans: list[Any], suffix: str = "", **where: Any) -> Any:
    found = [
        s
        for s in spans
        if s.name.endswith(suffix) and all(getattr(s, k) == v for k, v in where.items())
    ]
    assert len(found) == 1, (where, [(s.service, s.name) for s in spans])
    return found[0]


def ancestors(spans: list[Any], span: Any) -> list[Any]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


def test_every_span_has_the_parent_that_caused_it(spans: list[Any], cluster: Cluster) -> None:
    print(trace_tree(spans, TRACE_ID))
    entry = one(spans, service="gateway", kind=SERVER, name="POST /downstream")
    assert entry.parent_span_id == ROOT_SPAN
    publish_request = one(spans, service="orders", kind=SERVER, name="POST /events")
    relay = next(s for s in spans if s.span_id == publish_request.parent_span_id)
    assert (relay.service, relay.kind) == ("gateway", CLIENT)
    assert entry in ancestors(spans, relay)

    # FastStream: a "create" span for the message, a "publish" span for sending it, and on the
    # consumer side a "process" span that is a child of the message's create span.
    publish = one(spans, " publish", service="orders", kind=PRODUCER)
    create = one(spans, " create", service="orders", kind=PRODUCER)
    assert publish_request in ancestors(spans, publish)
    assert create in [publish, *ancestors(spans, publish)]
    process = one(spans, service="shipping", kind=CONSUMER)
    assert process.parent_span_id == create.span_id

    callback = one(spans, service="gateway", kind=SERVER, name="GET /items/{item_id}")
    call = next(s for s in spans if s.span_id == callback.parent_span_id)
    assert (call.service, call.kind) == ("shipping", CLIENT)
    assert process in ancestors(spans, call)


def test_spans_follow_the_semantic_conventions(
    spans: list[Any], cluster: Cluster, broker: str
) -> None:
    for span in spans:
        if span.kind == SERVER:
            assert span.attributes["http.request.method"] in {"GET", "POST"}
            assert span.attributes["http.route"].startswith("/")
            assert isinstance(span.attributes["http.response.status_code"], int)
        elif span.kind == CLIENT:
            assert span.attributes["http.request.method"] in {"GET", "POST"}
            assert span.attributes["server.address"] == "127.0.0.1"
            assert span.attributes["url.full"].startswith("http://127.0.0.1:")
            assert "http.response.status_code" in span.attributes
        elif span.kind == PRODUCER:
            assert span.attributes["messaging.system"] == broker
            assert span.attributes["messaging.destination.name"] == cluster.destination
        elif span.kind == CONSUMER:
            # FastStream names the consumer's destination with the older attribute.
            assert span.attributes["messaging.system"] == broker
            assert span.attributes["messaging.destination_publish.name"] == cluster.destination
            assert span.attributes["messaging.operation"] == "process"
            assert span.attributes["messaging.message.id"]


def test_each_service_logged_the_trace(spans: list[Any], cluster: Cluster) -> None:
    for name in ("gateway", "orders", "shipping"):
        logged = [line for line in cluster[name].logs() if line.get("trace_id") == TRACE_ID]
        assert logged, f"{name} wrote no log line with the trace id"
        assert all(line["service"] == name for line in logged)


def test_each_service_counted_it(spans: list[Any], cluster: Cluster) -> None:
    def metrics(name: str) -> str:
        return httpx.get(cluster[name].url + "/metrics", timeout=5).text

    gateway, orders, shipping = metrics("gateway"), metrics("orders"), metrics("shipping")
    assert 'http_route="/downstream"' in gateway
    assert 'http_route="/items/{item_id}"' in gateway
    assert 'http_route="/events"' in orders
    assert "faststream_published_messages_total" in orders
    assert "faststream_received_processed_messages_total" in shipping
    outbound = [
        line
        for line in shipping.splitlines()
        if line.startswith("http_client_request_duration_seconds_count")
    ]
    assert any(
        'http_request_method="GET"' in line and 'server_address="127.0.0.1"' in line
        for line in outbound
    )


def test_services_stop_cleanly(cluster: Cluster, spans: list[Any], tmp_path: Path) -> None:
    for service in cluster.services.values():
        assert service.stop() == 0, "".join(service.lines[-20:])
