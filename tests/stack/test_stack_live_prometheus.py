"""A real Prometheus with the repository's config and rules, scraping a real /metrics.

The scrape target is a loopback HTTP server exposing the contract's metrics through
prometheus_client (and FastStream's own metrics container), with a background thread
making traffic. Every dashboard query and recording rule must return data from it.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from faststream.prometheus.container import MetricsContainer
from faststream.prometheus.manager import MetricsManager
from faststream.prometheus.types import ProcessingStatus, PublishingStatus
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

SERVICE = "orders"  # a file_sd target
CONSUL_SERVICE = "payments"  # a Consul registration
DOOMED_SERVICE = "inventory"  # stopped to make ServiceDown fire
CONSUL_METRICS_PATH = "/internal/metrics"
# Jobs whose targets cannot run here (no Jaeger without Docker).
UNREACHABLE_JOBS = {"jaeger-spanmetrics"}
DEADLINE_S = 30

# One Prometheus for the whole module: keep its tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("stack-live-prometheus")


# --- the scrape target ----------------------------------------------------------------


class ServiceMetrics:
    """The metrics a baked service exposes, named as docs/metrics.md says."""

    def __init__(self, service: str) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.http_server = Histogram(
            "http_server_request_duration_seconds",
            "HTTP requests served",
            ["http_request_method", "http_route", "http_response_status_code"],
            registry=registry,
        )
        self.active = Gauge(
            "http_server_active_requests", "In flight", ["http_request_method"], registry=registry
        )
        self.http_client = Histogram(
            "http_client_request_duration_seconds",
            "Outbound attempts",
            ["http_request_method", "server_address", "http_response_status_code", "error_type"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state", "Breaker state", ["name"], registry=registry
        )
        self.breaker_transitions = Counter(
            "circuit_breaker_transitions",
            "Breaker transitions",
            ["name", "from_state", "to_state"],
            registry=registry,
        )
        self.breaker_rejections = Counter(
            "circuit_breaker_rejections", "Refused", ["name"], registry=registry
        )
        self.bulkhead_rejections = Counter(
            "bulkhead_rejections", "Refused", ["name"], registry=registry
        )
        self.retries = Counter("outbound_retries", "Retries", ["name", "reason"], registry=registry)
        self.dead_letters = Counter(
            "messaging_dead_letters", "Dead-lettered", ["destination", "reason"], registry=registry
        )
        self.duplicates = Counter(
            "messaging_duplicates", "Duplicates skipped", ["destination"], registry=registry
        )
        self.loop_lag = Gauge("event_loop_lag_seconds", "Event loop lag", registry=registry)
        build = Gauge(
            "service_build_info", "Build", ["version", "owner", "python_version"], registry=registry
        )
        build.labels(version="0.1.0", owner="platform", python_version="3.11").set(1)
        self.faststream = MetricsManager(
            MetricsContainer(registry, custom_label_names=[]), app_name=service
        )
        self._ticks = itertools.count()
        self._breaker = 0

    def tick(self) -> None:
        """One slice of deterministic traffic: mostly fast successes, some of everything else."""
        i = next(self._ticks)
        trace_id = f"{i + 1:032x}"
        duration = (0.02, 0.04, 0.08, 0.3, 0.6)[i % 5]
        self.http_server.labels("GET", "/orders/{id}", "200").observe(
            duration, exemplar={"trace_id": trace_id}
        )
        if i % 10 == 0:
            self.http_server.labels("POST", "/orders", "500").observe(
                0.05, exemplar={"trace_id": trace_id}
            )
        if i % 7 == 0:
            self.http_server.labels("POST", "/orders", "422").observe(0.01)
        self.active.labels("GET").set(i % 4)

        self.http_client.labels("GET", "inventory:8080", "200", "").observe(
            0.03, exemplar={"trace_id": trace_id}
        )
        if i % 8 == 0:
            self.http_client.labels("GET", "inventory:8080", "", "ConnectTimeout").observe(1.0)
            self.retries.labels("inventory", "ConnectTimeout").inc()
        if i % 9 == 0:
            self.http_client.labels("GET", "inventory:8080", "503", "503").observe(0.02)

        state = (i // 5) % 3  # closed -> open -> half-open -> closed ...
        if state != self._breaker:
            names = ("closed", "open", "half_open")
            self.breaker_transitions.labels("inventory", names[self._breaker], names[state]).inc()
            self._breaker = state
        self.breaker_state.labels("inventory").set(state)
        self.breaker_state.labels("pricing").set(0)
        if state == 1:
            self.breaker_rejections.labels("inventory").inc()
        if i % 6 == 0:
            self.bulkhead_rejections.labels("inventory").inc()

        broker, subject = "nats", "orders.created"
        failed_publish = i % 11 == 0
        self.faststream.add_published_message(
            broker, subject, PublishingStatus.error if failed_publish else PublishingStatus.success
        )
        self.faststream.observe_published_message_duration(0.002, broker, subject)
        if failed_publish:
            self.faststream.add_published_message_exception(broker, subject, "TimeoutError")
        self.faststream.add_received_message(broker, subject)
        self.faststream.observe_received_messages_size(broker, subject, 120 + i % 50)
        self.faststream.add_received_message_in_process(broker, subject)
        failed_handler = i % 12 == 0
        self.faststream.observe_received_processed_message_duration(0.01, broker, subject)
        self.faststream.add_received_processed_message(
            broker, subject, ProcessingStatus.error if failed_handler else ProcessingStatus.acked
        )
        if failed_handler:
            self.faststream.add_received_processed_message_exception(broker, subject, "ValueError")
        self.faststream.remove_received_message_in_process(broker, subject)
        if i % 13 == 0:
            self.dead_letters.labels(subject, "max_deliveries").inc()
        if i % 14 == 0:
            self.duplicates.labels(subject).inc()
        self.loop_lag.set(0.001 * (1 + i % 3))


class MetricsServer:
    """Serves a registry on given paths, negotiating OpenMetrics like the baked services."""

    def __init__(self, metrics: ServiceMetrics, paths: set[str]) -> None:
        self.accept_headers: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urllib.parse.urlsplit(self.path).path not in paths:
                    self.send_error(404)
                    return
                accept = self.headers.get("Accept", "")
                outer.accept_headers.append(accept)
                encoder, content_type = choose_encoder(accept)
                body = encoder(metrics.registry)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join()


@pytest.fixture(scope="module")
def service_metrics() -> Iterator[ServiceMetrics]:
    metrics = ServiceMetrics(SERVICE)
    metrics.tick()  # every labelled series exists before the first scrape
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.05):
            metrics.tick()

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    yield metrics
    stop.set()
    thread.join()


@pytest.fixture(scope="module")
def target(service_metrics: ServiceMetrics) -> Iterator[MetricsServer]:
    server = MetricsServer(service_metrics, {"/metrics", CONSUL_METRICS_PATH})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def doomed_target(service_metrics: ServiceMetrics) -> Iterator[MetricsServer]:
    server = MetricsServer(service_metrics, {"/metrics"})
    yield server
    server.stop()


# --- Prometheus -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rules_with_short_for(rule_files: list[Path]) -> dict[str, Any]:
    """The repository's rules, with ServiceDown's `for` shortened so the test need not wait."""
    rules = {path.name: yaml.safe_load(path.read_text()) for path in rule_files}
    shortened = 0
    for content in rules.values():
        for group in content["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "ServiceDown":
                    rule["for"] = "0s"
                    shortened += 1
    assert shortened == 1
    return rules


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr)["result"]


def eventually_empty(
    problems: Callable[[], list[str]], deadline_s: float = DEADLINE_S
) -> list[str]:
    """Polls until `problems` returns an empty list, or returns its last list at the deadline."""
    end = time.monotonic() + deadline_s
    while (found := problems()) and time.monotonic() < end:
        time.sleep(0.5)
    return found


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    """Polls `check` until it returns something truthy; fails with `what` and the last result."""
    end = time.monotonic() + deadline_s
    result = None
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; last result: {result!r}")


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str,
    prometheus_config: dict[str, Any],
    rule_files: list[Path],
    without_consul_discovery: Callable[[dict[str, Any], list[str]], dict[str, Any]],
    target: MetricsServer,
    doomed_target: MetricsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    port = free_port()

    (workdir / "rules").mkdir()
    for name, content in rules_with_short_for(rule_files).items():
        (workdir / "rules" / name).write_text(yaml.safe_dump(content))
    (workdir / "services.json").write_text(
        json.dumps(
            [
                {"targets": [target.address], "labels": {"service": SERVICE}},
                {"targets": [doomed_target.address], "labels": {"service": DOOMED_SERVICE}},
            ]
        )
    )
    # What Consul's catalog would say about a service that registered with metrics_path.
    (workdir / "consul.json").write_text(
        json.dumps(
            [
                {
                    "targets": [target.address],
                    "labels": {
                        "__meta_consul_service": CONSUL_SERVICE,
                        "__meta_consul_service_id": f"{CONSUL_SERVICE}-1",
                        "__meta_consul_service_metadata_metrics_path": CONSUL_METRICS_PATH,
                    },
                }
            ]
        )
    )

    config = without_consul_discovery(prometheus_config, [str(workdir / "consul.json")])
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(workdir / "rules" / "*.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= UNREACHABLE_JOBS
    config["scrape_configs"] = [job for name, job in jobs.items() if name not in UNREACHABLE_JOBS]
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            if sd["files"] != [str(workdir / "consul.json")]:
                sd["files"] = [str(workdir / "services.json")]
            sd["refresh_interval"] = "1s"
        for static in job.get("static_configs", []):
            assert job["job_name"] == "prometheus", f"no stand-in for {job['job_name']} here"
            static["targets"] = [f"127.0.0.1:{port}"]  # Prometheus scraping itself
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for("Prometheus to be ready", ready, deadline_s=15)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def scraping(prometheus: Prometheus) -> Prometheus:
    """Prometheus once every target we serve is up and rates have two samples to work with."""

    def all_up() -> bool:
        up = {r["metric"]["service"]: r["value"][1] for r in prometheus.query("up")}
        return up == {SERVICE: "1", CONSUL_SERVICE: "1", DOOMED_SERVICE: "1", "prometheus": "1"}

    wait_for("every target to be up", all_up)
    wait_for(
        "a rate over the scraped counters",
        lambda: prometheus.query(
            f'rate(http_server_request_duration_seconds_count{{service="{SERVICE}"}}[1m]) > 0'
        ),
    )
    return prometheus


# --- the tests ------------------------------------------------------------------------


def test_targets_carry_their_service_and_metrics_path(scraping: Prometheus) -> None:
    active = scraping.get("/api/v1/targets", state="active")["activeTargets"]
    by_service = {t["labels"]["service"]: t for t in active}
    assert set(by_service) == {SERVICE, CONSUL_SERVICE, DOOMED_SERVICE, "prometheus"}
    assert by_service[CONSUL_SERVICE]["scrapeUrl"].endswith(CONSUL_METRICS_PATH)
    assert by_service[SERVICE]["scrapeUrl"].endswith("/metrics")


def test_every_series_has_a_service_label(scraping: Prometheus) -> None:
    assert scraping.query('count by (job, __name__) ({__name__=~".+", service=""})') == []


def test_scrapes_negotiate_openmetrics_and_keep_exemplars(
    scraping: Prometheus, target: MetricsServer
) -> None:
    assert target.accept_headers
    assert all(h.startswith("application/openmetrics-text") for h in target.accept_headers), (
        target.accept_headers
    )
    now = time.time()
    exemplars = wait_for(
        "exemplars",
        lambda: scraping.get(
            "/api/v1/query_exemplars",
            query=f'http_server_request_duration_seconds_bucket{{service="{SERVICE}"}}',
            start=str(now - 300),
            end=str(now + 60),
        ),
    )
    trace_ids = {e["labels"].get("trace_id") for series in exemplars for e in series["exemplars"]}
    assert trace_ids
    assert None not in trace_ids


def test_service_variable_lists_the_service(
    scraping: Prometheus, dashboards: dict[str, Any]
) -> None:
    for dashboard in dashboards.values():
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
        metric = variable["definition"].removeprefix("label_values(").split(",")[0]
        values = scraping.get("/api/v1/label/service/values", **{"match[]": metric})
        assert SERVICE in values


def test_every_dashboard_query_returns_data(
    scraping: Prometheus, dashboard_queries: list[Any], concrete_query: Callable[[str, str], str]
) -> None:
    def without_numbers() -> list[str]:
        """Queries with no result, or whose every value is NaN (e.g. a quantile of nothing)."""
        failing = []
        for query in dashboard_queries:
            values = [
                float(r["value"][1]) for r in scraping.query(concrete_query(query.expr, SERVICE))
            ]
            if not any(value == value for value in values):
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
            for service in (SERVICE, CONSUL_SERVICE)
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


def test_service_down_fires_when_a_target_stops(
    scraping: Prometheus, doomed_target: MetricsServer
) -> None:
    doomed_target.stop()

    def firing() -> set[str]:
        alerts = scraping.get("/api/v1/alerts")["alerts"]
        return {
            a["labels"]["service"]
            for a in alerts
            if a["labels"]["alertname"] == "ServiceDown" and a["state"] == "firing"
        }

    assert wait_for("ServiceDown to fire", firing) == {DOOMED_SERVICE}
