"""The stack as shipped, for real: Prometheus 3 and Jaeger v2 at the compose file's versions,
with the repository's configs and rules, watching baked services under real traffic.

Three services are baked and run as processes (tests/e2e/cluster.py), exporting their spans to
Jaeger: storefront and orders are listed in a target file, shipping registers itself in a Consul
stand-in that Prometheus's own Consul discovery watches. A second storefront is listed too (the
alert test stops it), and a second shipping consumes in a group of its own with a downstream
that refuses every call (its events end as dead letters). Prometheus runs
observability/prometheus as shipped (prometheus.yml, rules/), with addresses substituted only:
the stand-in for consul:8500, the test's Jaeger for jaeger:8889, its own port for
localhost:9090, and a target file of the test's services instead of the example one. Jaeger runs
observability/jaeger/config.yaml with loopback addresses and this Prometheus as the Monitor
tab's backend.

Background threads give the services real traffic: successes, 404s, 422s, orders through the
example saga (confirmed and compensated), an HTTP -> NATS ->
consumer -> HTTP relay, outbound calls to a port that never answers (5xx, timeouts, retries,
breaker and bulkhead refusals), poison and duplicate messages, and a spell without a
dead-letter stream. Every dashboard query and recording rule must return data from them; the
alerts fire as the rule unit tests say; exemplars lead to traces that Jaeger has; Jaeger's
Monitor tab shows call rate, error rate and latency per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml

from tests.e2e.cluster import Cluster, Service, running_cluster
from tests.net import free_port, port_open
from tests.stack.conftest import PROMETHEUS_DIR
from tests.stack.programs import (
    Jaeger,
    JaegerPorts,
    Prometheus,
    run_jaeger,
    run_prometheus,
)
from tests.stack.programs import prometheus_config as with_stack_addresses

BROKER_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
FILE_SD_SERVICES = ("storefront", "orders")  # listed in a target file
SAGA_SERVICE = "shipping"  # baked with the example saga (tests/e2e/cluster.py)
CONSUL_SERVICE = "shipping"  # registers itself in Consul
SERVICES = (*FILE_SD_SERVICES, CONSUL_SERVICE)
FAILING_SERVICE = "orders"  # its DOWNSTREAM_URL is a port that never answers
HEALTHY_SERVICE = "shipping"  # nothing it does is an error or slow: no alert
REPLICA_OF = "storefront"  # a second instance, in the target file, stopped to make ServiceDown fire
# Dashboards every service must fill; the others (messaging, outbound) need some service to.
EVERY_SERVICE_DASHBOARDS = {"service-overview.json", "service-runtime.json"}
# The shipped scrape interval is 15 s, and rules wait out their `for` as shipped.
DEADLINE_S = 90
ALERT_DEADLINE_S = 300

# One Prometheus for the whole module: keep its tests on one xdist worker.
pytestmark = [pytest.mark.bake, pytest.mark.xdist_group("stack-live-prometheus")]


# --- the scrape targets: baked services with traffic ----------------------------------


def stream_name(subject: str) -> str:
    """The JetStream stream a baked service keeps `subject` in (messaging/nats.py)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper()


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A port that takes connections and never answers: every call to it times out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def dead_letters() -> str:
    """A dead-letter subject of this run's own, so that deleting its stream touches no other."""
    return f"live-prometheus-{uuid.uuid4().hex[:8]}.dlq"


@pytest.fixture(scope="module")
def prometheus_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def jaeger(
    jaeger_binary: Path, prometheus_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Jaeger]:
    """Jaeger as shipped, with this module's Prometheus behind its Monitor tab."""
    with run_jaeger(
        jaeger_binary,
        tmp_path_factory.mktemp("jaeger"),
        JaegerPorts.free(),
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, blackhole: int, dead_letters: str, jaeger: Jaeger
) -> Iterator[Cluster]:
    if not port_open(int(BROKER_URL.rsplit(":", 1)[1])):
        pytest.fail(f"no NATS server at {BROKER_URL}: start one (nats-server -js), as .ci/run does")
    messaging = {
        "MESSAGING_DEAD_LETTER_DESTINATION": dead_letters,
        "MESSAGING_MAX_ATTEMPTS": "2",
        "MESSAGING_RETRY_BACKOFF_SECONDS": "0.05",
    }
    extra_env = {
        "orders": {
            **messaging,
            "DOWNSTREAM_URL": f"http://127.0.0.1:{blackhole}/",
            "DOWNSTREAM_CONNECT_TIMEOUT": "0.3",
            "DOWNSTREAM_READ_TIMEOUT": "0.3",
            "DOWNSTREAM_TIMEOUT_SECONDS": "1.5",
            "DOWNSTREAM_RETRY_BASE_DELAY_SECONDS": "0.05",
            "DOWNSTREAM_BREAKER_WINDOW_SECONDS": "10",
            "DOWNSTREAM_BREAKER_MINIMUM_CALLS": "4",
            "DOWNSTREAM_BREAKER_OPEN_SECONDS": "2",
            "DOWNSTREAM_BREAKER_HALF_OPEN_CALLS": "1",
            "DOWNSTREAM_BULKHEAD_MAX_CONCURRENT": "1",
            "DOWNSTREAM_BULKHEAD_MAX_WAIT_SECONDS": "0",
        },
        "shipping": messaging,
    }
    workdir = tmp_path_factory.mktemp("live-prometheus")
    with running_cluster(workdir, BROKER_URL, jaeger, extra_env) as running:
        yield running


@pytest.fixture(scope="module")
def replica(cluster: Cluster) -> Service:
    """A second storefront instance: scraped through the target file, stopped by the alert test."""
    return cluster.start_replica(REPLICA_OF)


@pytest.fixture(scope="module")
def auditor(cluster: Cluster) -> Service:
    """A second shipping instance in a consumer group of its own, whose downstream refuses
    every connection while its breaker never opens: each event fails every attempt and is
    dead-lettered as exhausted (an open breaker would hold the events instead)."""
    return cluster.start_replica(
        CONSUL_SERVICE,
        {
            "MESSAGING_CONSUMER_GROUP": "audit",
            "DOWNSTREAM_URL": f"http://127.0.0.1:{free_port()}/",
            "DOWNSTREAM_RETRY_MAX_ATTEMPTS": "1",
            "DOWNSTREAM_BREAKER_MINIMUM_CALLS": "1000000",
        },
    )


class Traffic:
    """Real requests and messages, in background threads, until `stop`."""

    def __init__(self, cluster: Cluster, dead_letters: str) -> None:
        self.cluster = cluster
        self.dead_letters = dead_letters
        self.done = threading.Event()
        self.dead_letter_gap_over = threading.Event()
        self.failures: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._guarded(run), daemon=True)
            for run in (self._requests, self._failing_calls, self._messages)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _guarded(self, run: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            try:
                run()
            except BaseException as error:  # reported by the fixture, not lost in a thread
                self.failures.append(error)

        return guarded

    @staticmethod
    def _send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> None:
        with contextlib.suppress(httpx.HTTPError):  # a service the test stopped
            client.request(method, url, **kwargs)

    def _requests(self) -> None:
        storefront = self.cluster["storefront"].url
        with httpx.Client(timeout=5) as client:
            tick = 0
            while not self.done.wait(0.2):
                for name in SERVICES:
                    url = self.cluster[name].url
                    self._send(client, "GET", url + "/items/1")
                    self._send(client, "GET", url + "/items/999")  # 404
                    if tick % 5 == 0:
                        self._send(client, "POST", url + "/items", json={"name": ""})  # 422
                if tick % 5 == 0:  # HTTP -> NATS -> consumer -> HTTP
                    self._send(
                        client,
                        "POST",
                        storefront + "/downstream",
                        json={"type": "order.placed", "data": {"order": tick}},
                    )
                if tick % 5 == 2:  # the example saga: confirmed, or compensated when declined
                    amount = 1_500 if tick % 10 == 2 else 100_001
                    self._send(
                        client,
                        "POST",
                        self.cluster[SAGA_SERVICE].url + "/orders",
                        json={"sku": "book", "quantity": 1, "amount_cents": amount},
                    )
                tick += 1

    def _failing_calls(self) -> None:
        """Three calls at once to a downstream that never answers: the bulkhead admits one,
        which times out and is retried (502/504) until the breaker opens and refuses (503)."""
        url = self.cluster[FAILING_SERVICE].url + "/downstream"
        with httpx.Client(timeout=5) as client, ThreadPoolExecutor(3) as pool:
            while not self.done.wait(0.3):
                list(pool.map(lambda _: self._send(client, "GET", url), range(3)))

    def _messages(self) -> None:
        asyncio.run(self._publish_messages())

    async def _publish_messages(self) -> None:
        connection = await nats.connect(BROKER_URL)
        jetstream = connection.jetstream()
        subject = self.cluster.destination
        dead_letter_stream = stream_name(self.dead_letters)

        async def poison_and_duplicate() -> None:
            await jetstream.publish(subject, b"not an event")  # dead-lettered as invalid
            event = json.dumps(
                {
                    "type": "order.placed",
                    "data": {},
                    "id": str(uuid.uuid4()),
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
            ).encode()
            headers = {"message_id": f"duplicate-{uuid.uuid4()}"}
            for _ in range(2):  # no Nats-Msg-Id: JetStream keeps both, the consumer skips one
                await jetstream.publish(subject, event, headers=headers)

        try:
            await poison_and_duplicate()
            await asyncio.sleep(2)
            # Without its stream a dead letter cannot be published: the consumers' publish
            # fails and the message is nacked (publish and processing failures).
            await jetstream.delete_stream(dead_letter_stream)
            await poison_and_duplicate()
            await asyncio.sleep(3)
            await jetstream.add_stream(name=dead_letter_stream, subjects=[self.dead_letters])
            self.dead_letter_gap_over.set()
            while not self.done.is_set():
                await poison_and_duplicate()
                await asyncio.sleep(2)
        finally:
            with contextlib.suppress(Exception):
                await jetstream.delete_stream(dead_letter_stream)
            await connection.close()


@pytest.fixture(scope="module")
def traffic(cluster: Cluster, dead_letters: str) -> Iterator[Traffic]:
    running = Traffic(cluster, dead_letters)
    yield running
    running.stop()
    assert running.failures == []


# --- Prometheus and Jaeger ------------------------------------------------------------


@pytest.fixture(scope="module")
def consul_registration(cluster: Cluster, auditor: Service) -> dict[str, Any]:
    """shipping's registration, once both its instances are in the stand-in, passing."""

    def registered() -> dict[int, dict[str, Any]]:
        entries = cluster.consul.health_service(CONSUL_SERVICE, passing=True, tags=[])
        by_port = {entry["Service"]["Port"]: entry["Service"] for entry in entries}
        return by_port if set(by_port) == {cluster[CONSUL_SERVICE].port, auditor.port} else {}

    return dict(
        wait_for("shipping to register in Consul", registered)[cluster[CONSUL_SERVICE].port]
    )


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str,
    prometheus_config: dict[str, Any],
    prometheus_port: int,
    cluster: Cluster,
    replica: Service,
    consul_registration: dict[str, Any],
    jaeger: Jaeger,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    """observability/prometheus as shipped, addresses aside, in a directory of its own."""
    workdir = tmp_path_factory.mktemp("prometheus") / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, workdir)
    # The example target file names a host that does not exist here: the test's services
    # take its place.
    for example in (workdir / "targets").glob("*.json"):
        example.unlink()
    (workdir / "targets" / "services.json").write_text(
        json.dumps(
            [
                {"targets": [f"127.0.0.1:{cluster[name].port}"], "labels": {"service": name}}
                for name in FILE_SD_SERVICES
            ]
            + [{"targets": [f"127.0.0.1:{replica.port}"], "labels": {"service": REPLICA_OF}}]
        )
    )
    config = with_stack_addresses(
        prometheus_config,
        port=prometheus_port,
        consul=cluster.consul.url.removeprefix("http://"),
        jaeger_spanmetrics=jaeger.spanmetrics_address,
    )
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    with run_prometheus(Path(prometheus_binary), workdir, prometheus_port) as server:
        yield server


def eventually_empty(
    problems: Callable[[], list[str]], deadline_s: float = DEADLINE_S
) -> list[str]:
    """Polls until `problems` returns an empty list, or returns its last list at the deadline."""
    end = time.monotonic() + deadline_s
    while (found := problems()) and time.monotonic() < end:
        time.sleep(1)
    return found


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    """Polls `check` until it returns something truthy; fails with `what` and the last result."""
    end = time.monotonic() + deadline_s
    result = None
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; last result: {result!r}")


def instances_up(prometheus: Prometheus) -> dict[str, str]:
    return {
        f"{r['metric']['service']} {r['metric']['instance']}": r["value"][1]
        for r in prometheus.query("up")
    }


@pytest.fixture(scope="module")
def scraping(
    prometheus: Prometheus,
    traffic: Traffic,
    cluster: Cluster,
    replica: Service,
    auditor: Service,
    jaeger: Jaeger,
) -> Prometheus:
    """Prometheus once every target is up, rates have two samples to work with, and the
    spell without a dead-letter stream is over."""
    expected = {
        **{f"{name} 127.0.0.1:{cluster[name].port}": "1" for name in SERVICES},
        f"{REPLICA_OF} 127.0.0.1:{replica.port}": "1",
        f"{CONSUL_SERVICE} 127.0.0.1:{auditor.port}": "1",
        f"jaeger {jaeger.spanmetrics_address}": "1",
        f"prometheus {prometheus.url.removeprefix('http://')}": "1",
    }
    wait_for("every target to be up", lambda: instances_up(prometheus) == expected)

    def serving() -> set[str]:
        rates = prometheus.query(
            "sum by (service) (rate(http_server_request_duration_seconds_count[1m]) > 0)"
        )
        return {r["metric"]["service"] for r in rates} >= set(SERVICES)

    wait_for("a rate over every service's counters", serving)
    assert traffic.dead_letter_gap_over.wait(DEADLINE_S), traffic.failures
    return prometheus


# --- the tests ------------------------------------------------------------------------


def test_prometheus_is_the_version_the_compose_file_pins(
    scraping: Prometheus, compose: dict[str, Any]
) -> None:
    pinned = compose["services"]["prometheus"]["image"].rpartition(":v")[2]
    assert scraping.get("/api/v1/status/buildinfo")["version"] == pinned


def test_targets_carry_their_service_and_metrics_path(
    scraping: Prometheus, cluster: Cluster, consul_registration: dict[str, Any]
) -> None:
    active = scraping.get("/api/v1/targets", state="active")["activeTargets"]
    by_instance = {t["labels"]["instance"]: t for t in active}
    shipping = by_instance[f"127.0.0.1:{cluster[CONSUL_SERVICE].port}"]
    # Found by Prometheus's Consul discovery, from the service's own registration.
    assert shipping["labels"]["job"] == "consul-services"
    assert shipping["labels"]["service"] == CONSUL_SERVICE
    assert shipping["labels"]["service_instance_id"] == consul_registration["ID"]
    assert shipping["scrapeUrl"].endswith(consul_registration["Meta"]["metrics_path"])
    assert shipping["discoveredLabels"]["__meta_consul_health"] == "passing"
    for name in FILE_SD_SERVICES:
        target = by_instance[f"127.0.0.1:{cluster[name].port}"]
        assert target["labels"]["job"] == "services"
        assert target["labels"]["service"] == name
        assert target["scrapeUrl"].endswith("/metrics")
    jobs = {t["labels"]["job"] for t in active}
    assert jobs == {"services", "consul-services", "jaeger-spanmetrics", "prometheus"}
    dropped = scraping.get("/api/v1/targets", state="dropped")["droppedTargets"]
    assert "consul" in {t["discoveredLabels"].get("__meta_consul_service") for t in dropped}


def test_every_series_has_a_service_label(scraping: Prometheus) -> None:
    assert scraping.query('count by (job, __name__) ({__name__=~".+", service=""})') == []


def test_scrapes_negotiate_openmetrics_and_keep_exemplars_that_lead_to_jaeger(
    scraping: Prometheus, jaeger: Jaeger
) -> None:
    # The services attach exemplars only in OpenMetrics: exemplars stored by Prometheus mean
    # its scrapes negotiated it.
    def exemplar_trace_ids() -> dict[str, set[str | None]]:
        now = time.time()
        found: dict[str, set[str | None]] = {}
        for metric in (
            "http_server_request_duration_seconds_bucket",
            "http_client_request_duration_seconds_bucket",
        ):
            for series in scraping.get(
                "/api/v1/query_exemplars",
                query=f'{metric}{{service=~"{"|".join(SERVICES)}"}}',
                start=str(now - 300),
                end=str(now + 60),
            ):
                found.setdefault(series["seriesLabels"]["service"], set()).update(
                    e["labels"].get("trace_id") for e in series["exemplars"]
                )
        return found if set(found) == set(SERVICES) else {}

    trace_ids = wait_for("exemplars from every service", exemplar_trace_ids)
    for name, ids in trace_ids.items():
        assert ids, name
        assert None not in ids, name
        # Clicking an exemplar opens its trace in Jaeger: the trace is there, with a span of
        # the service whose series carried the exemplar.
        for trace_id in sorted(ids, key=str)[:5]:
            assert trace_id is not None
            spans = wait_for(
                f"trace {trace_id} in Jaeger", lambda t=trace_id: jaeger.trace(t), deadline_s=15
            )
            assert name in {span.service for span in spans}, (trace_id, name)


def test_service_variable_lists_the_service(
    scraping: Prometheus, dashboards: dict[str, Any]
) -> None:
    for dashboard in dashboards.values():
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
        metric = variable["definition"].removeprefix("label_values(").split(",")[0]
        values = scraping.get("/api/v1/label/service/values", **{"match[]": metric})
        assert set(values) >= set(SERVICES)


def test_every_dashboard_query_returns_data(
    scraping: Prometheus, dashboard_queries: list[Any], concrete_query: Callable[[str, str], str]
) -> None:
    def has_numbers(query: Any, service: str) -> bool:
        """False for no result, or for only NaN values (e.g. a quantile of nothing)."""
        results = scraping.query(concrete_query(query.expr, service))
        return any(float(r["value"][1]) == float(r["value"][1]) for r in results)

    def without_numbers() -> list[str]:
        """Overview and runtime queries must answer for every service; messaging and outbound
        ones for some service (a storefront without a broker has no messaging to show)."""
        failing = []
        for query in dashboard_queries:
            answering = [name for name in SERVICES if has_numbers(query, name)]
            if query.dashboard in EVERY_SERVICE_DASHBOARDS:
                failing += [f"{query} [{n}]" for n in SERVICES if n not in answering]
            elif not answering:
                failing.append(str(query))
        return failing

    assert eventually_empty(without_numbers) == []


def test_every_recording_rule_produces_series(
    scraping: Prometheus, rules: list[dict[str, Any]]
) -> None:
    records = sorted({rule["record"] for rule in rules if "record" in rule})
    assert records

    def missing() -> list[str]:
        return [
            f"{record} for {service}"
            for record in records
            for service in SERVICES
            if not scraping.query(f'{record}{{service="{service}"}}')
        ]

    assert eventually_empty(missing) == []


def test_every_rule_evaluates_cleanly(scraping: Prometheus, rules: list[dict[str, Any]]) -> None:
    never = "0001-01-01T00:00:00Z"

    def evaluated() -> list[dict[str, Any]] | None:
        loaded = [
            rule for group in scraping.get("/api/v1/rules")["groups"] for rule in group["rules"]
        ]
        assert len(loaded) == len(rules)
        return loaded if all(rule["lastEvaluation"] != never for rule in loaded) else None

    loaded = wait_for("every rule to be evaluated", evaluated)
    assert [(rule["name"], rule["lastError"]) for rule in loaded if rule["health"] != "ok"] == []


# Series a service creates at 0 before anything happens (so dashboards show 0, not "no data"):
# these expressions check that the traffic really made each of them happen.
HAPPENED = {
    "2xx": 'http_server_request_duration_seconds_count{http_response_status_code="200"}',
    "404": 'http_server_request_duration_seconds_count{http_response_status_code="404"}',
    "422": 'http_server_request_duration_seconds_count{http_response_status_code="422"}',
    "5xx": 'http_server_request_duration_seconds_count{http_response_status_code=~"5.."}',
    "outbound failure": 'http_client_request_duration_seconds_count{error_type!=""}',
    "retry": "outbound_retries_total",
    "breaker opening": 'circuit_breaker_transitions_total{to_state="open"}',
    "breaker half-opening": 'circuit_breaker_transitions_total{to_state="half_open"}',
    "breaker refusal": "circuit_breaker_rejections_total",
    "bulkhead refusal": "bulkhead_rejections_total",
    "publish": 'messaging_client_sent_messages_total{error_type=""}',
    "publish failure": 'messaging_client_sent_messages_total{error_type!=""}',
    "processed message": 'messaging_process_duration_seconds_count{error_type=""}',
    "processing failure": 'messaging_process_duration_seconds_count{error_type!=""}',
    "invalid message dead-lettered": 'messaging_dead_letters_total{reason="invalid"}',
    "exhausted message dead-lettered": 'messaging_dead_letters_total{reason="exhausted"}',
    "duplicate skipped": "messaging_duplicates_total",
    "saga completed": 'sagas_finished_total{status="completed"}',
    "saga compensated": 'sagas_finished_total{status="compensated"}',
}


def test_the_traffic_made_everything_happen(scraping: Prometheus) -> None:
    def missing() -> list[str]:
        return [what for what, expr in HAPPENED.items() if not scraping.query(f"sum({expr}) > 0")]

    assert eventually_empty(missing) == []


# --- Jaeger's Monitor tab: span metrics through this Prometheus -----------------------


def values(answer: dict[str, Any]) -> dict[str, list[float]]:
    """A Jaeger metrics answer as {"service[ operation]": [points]}, NaNs left out."""
    found: dict[str, list[float]] = {}
    for metric in answer.get("metrics") or []:
        labels = {label["name"]: label["value"] for label in metric["labels"]}
        key = " ".join(filter(None, (labels.get("service_name"), labels.get("operation"))))
        points = [float(p["gaugeValue"]["doubleValue"]) for p in metric["metricPoints"]]
        found[key] = [v for v in points if not math.isnan(v)]
    return found


def test_prometheus_scrapes_jaegers_span_metrics(scraping: Prometheus) -> None:
    def per_service() -> set[str]:
        results = scraping.query(
            'sum by (service_name) (traces_span_metrics_calls_total{job="jaeger-spanmetrics"})'
        )
        return {r["metric"]["service_name"] for r in results}

    assert set(SERVICES) <= wait_for("span metrics for every service", per_service)


def test_monitor_tab_shows_call_rate_error_rate_and_latency(
    scraping: Prometheus, jaeger: Jaeger
) -> None:
    """What the Monitor tab asks for each service: server spans over the last hour."""

    def missing() -> list[str]:
        gaps = []
        for service in SERVICES:
            for kind, params in (
                ("calls", {}),
                ("latencies", {"quantile": 0.95}),
                ("calls", {"groupByOperation": "true"}),
                ("latencies", {"quantile": 0.95, "groupByOperation": "true"}),
                ("errors", {}),
            ):
                found = values(jaeger.metrics(kind, service, **params))
                if not any(found.values()):
                    gaps.append(f"{kind} {params} for {service}: {found}")
        return gaps

    assert eventually_empty(missing) == []

    # The failing service's errors show; its call rate and p95 latency are positive.
    (orders_errors,) = values(jaeger.metrics("errors", FAILING_SERVICE)).values()
    assert max(orders_errors) > 0
    (orders_calls,) = values(jaeger.metrics("calls", FAILING_SERVICE)).values()
    assert max(orders_calls) > 0
    (orders_p95,) = values(jaeger.metrics("latencies", FAILING_SERVICE, quantile=0.95)).values()
    assert max(orders_p95) > 0
    # Per operation, the way the Monitor tab's table lists them: the relay's route is there.
    by_operation = values(jaeger.metrics("calls", FAILING_SERVICE, groupByOperation="true"))
    assert f"{FAILING_SERVICE} GET /downstream" in by_operation, sorted(by_operation)


# --- alerts ---------------------------------------------------------------------------


def alerts_by_state(prometheus: Prometheus) -> dict[str, set[tuple[str, str, str]]]:
    """{state: {(alertname, service, instance)}} of every active alert."""
    found: dict[str, set[tuple[str, str, str]]] = {}
    for alert in prometheus.get("/api/v1/alerts")["alerts"]:
        labels = alert["labels"]
        found.setdefault(alert["state"], set()).add(
            (labels["alertname"], labels.get("service", ""), labels.get("instance", ""))
        )
    return found


def test_alerts_fire_as_the_rule_tests_say(
    scraping: Prometheus, cluster: Cluster, replica: Service
) -> None:
    """The shipped rules, `for` durations included: a stopped instance pages after a minute, the
    failing service's breaker and availability burn fire, the slow burn is pending (it fires
    after 15 minutes), and the healthy service raises nothing."""
    assert replica.stop() == 0
    down = ("ServiceDown", REPLICA_OF, f"127.0.0.1:{replica.port}")
    expected_firing = {
        down,
        ("CircuitBreakerOpen", FAILING_SERVICE, f"127.0.0.1:{cluster[FAILING_SERVICE].port}"),
        ("AvailabilityBudgetBurnFast", FAILING_SERVICE, ""),
    }

    def all_fired() -> dict[str, set[tuple[str, str, str]]]:
        alerts = alerts_by_state(scraping)
        return alerts if expected_firing <= alerts.get("firing", set()) else {}

    alerts = wait_for("the alerts to fire", all_fired, deadline_s=ALERT_DEADLINE_S)
    assert ("AvailabilityBudgetBurnSlow", FAILING_SERVICE, "") in alerts.get("pending", set())
    active = alerts.get("firing", set()) | alerts.get("pending", set())
    assert {alert for alert in active if alert[1] == HEALTHY_SERVICE} == set()
    assert {alert for alert in active if alert[1] == REPLICA_OF} == {down}

    (service_down,) = [
        a
        for a in scraping.get("/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == "ServiceDown"
    ]
    assert service_down["labels"]["severity"] == "page"
    assert service_down["annotations"]["summary"] == (
        f"{REPLICA_OF} (127.0.0.1:{replica.port}) is not answering scrapes"
    )
