"""A real Prometheus with the repository's config and rules, scraping baked services.

Three services are baked and run as processes (tests/e2e/cluster.py): gateway and orders are
file_sd targets, shipping is a Consul registration (as a target file carrying Consul's labels).
Background threads give them real traffic: successes, 404s, 422s, an HTTP -> NATS -> consumer
-> HTTP relay, outbound calls to a port that never answers (5xx, timeouts, retries, breaker and
bulkhead refusals), poison and duplicate messages, and a spell without a dead-letter stream
(publish and processing exceptions). Every dashboard query and recording rule must return data
from them, and ServiceDown must fire when one of them stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
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

from tests.e2e.cluster import Cluster, running_cluster
from tests.net import free_port, port_open

BROKER_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
FILE_SD_SERVICES = ("gateway", "orders")  # listed in a target file
CONSUL_SERVICE = "shipping"  # a Consul registration
SERVICES = (*FILE_SD_SERVICES, CONSUL_SERVICE)
DOOMED_SERVICE = "orders"  # stopped to make ServiceDown fire
FAILING_SERVICE = "orders"  # its DOWNSTREAM_URL is a port that never answers
# What a baked service registers in Consul (discovery/registration.py).
CONSUL_METRICS_PATH = "/metrics"
# Dashboards every service must fill; the others (messaging, outbound) need some service to.
EVERY_SERVICE_DASHBOARDS = {"service-overview.json", "service-runtime.json"}
# Jobs whose targets cannot run here (no Jaeger without Docker).
UNREACHABLE_JOBS = {"jaeger-spanmetrics"}
DEADLINE_S = 30

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
def cluster(
    tmp_path_factory: pytest.TempPathFactory, blackhole: int, dead_letters: str
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
    with running_cluster(tmp_path_factory.mktemp("live-prometheus"), BROKER_URL, extra_env) as c:
        yield c


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
        gateway = self.cluster["gateway"].url
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
                        gateway + "/downstream",
                        json={"type": "order.placed", "data": {"order": tick}},
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
            # fails and the message is nacked (publish and processing exceptions).
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


# --- Prometheus -----------------------------------------------------------------------


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
    cluster: Cluster,
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
                {"targets": [f"127.0.0.1:{cluster[name].port}"], "labels": {"service": name}}
                for name in FILE_SD_SERVICES
            ]
        )
    )
    # What Consul's catalog would say about a baked service that registered (with its
    # metrics_path), and about Consul's own entry (without one: not scraped).
    (workdir / "consul.json").write_text(
        json.dumps(
            [
                {
                    "targets": [f"127.0.0.1:{cluster[CONSUL_SERVICE].port}"],
                    "labels": {
                        "__meta_consul_service": CONSUL_SERVICE,
                        "__meta_consul_service_id": f"{CONSUL_SERVICE}-1",
                        "__meta_consul_service_metadata_metrics_path": CONSUL_METRICS_PATH,
                    },
                },
                {
                    "targets": [f"127.0.0.1:{free_port()}"],
                    "labels": {"__meta_consul_service": "consul"},
                },
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
def scraping(prometheus: Prometheus, traffic: Traffic) -> Prometheus:
    """Prometheus once every service is up, rates have two samples to work with, and the
    spell without a dead-letter stream is over."""

    def all_up() -> bool:
        up = {r["metric"]["service"]: r["value"][1] for r in prometheus.query("up")}
        return up == {**dict.fromkeys(SERVICES, "1"), "prometheus": "1"}

    wait_for("every target to be up", all_up)

    def serving() -> set[str]:
        rates = prometheus.query(
            "sum by (service) (rate(http_server_request_duration_seconds_count[1m]) > 0)"
        )
        return {r["metric"]["service"] for r in rates} >= set(SERVICES)

    wait_for("a rate over every service's counters", serving)
    assert traffic.dead_letter_gap_over.wait(DEADLINE_S), traffic.failures
    return prometheus


# --- the tests ------------------------------------------------------------------------


def test_targets_carry_their_service_and_metrics_path(scraping: Prometheus) -> None:
    active = scraping.get("/api/v1/targets", state="active")["activeTargets"]
    by_service = {t["labels"]["service"]: t for t in active}
    assert set(by_service) == {*SERVICES, "prometheus"}
    assert by_service[CONSUL_SERVICE]["labels"]["job"] == "consul-services"
    assert by_service[CONSUL_SERVICE]["labels"]["service_instance_id"] == f"{CONSUL_SERVICE}-1"
    assert by_service[CONSUL_SERVICE]["scrapeUrl"].endswith(CONSUL_METRICS_PATH)
    for name in FILE_SD_SERVICES:
        assert by_service[name]["labels"]["job"] == "services"
        assert by_service[name]["scrapeUrl"].endswith("/metrics")
    dropped = scraping.get("/api/v1/targets", state="dropped")["droppedTargets"]
    assert "consul" in {t["discoveredLabels"].get("__meta_consul_service") for t in dropped}


def test_every_series_has_a_service_label(scraping: Prometheus) -> None:
    assert scraping.query('count by (job, __name__) ({__name__=~".+", service=""})') == []


def test_scrapes_negotiate_openmetrics_and_keep_exemplars(
    scraping: Prometheus, cluster: Cluster
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
    spans = {span.trace_id for span in cluster.receiver.spans}
    assert set.union(*trace_ids.values()) & spans, "exemplars name no exported trace"


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
        ones for some service (a gateway without a broker has no messaging to show)."""
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
    "publish": 'faststream_published_messages_total{status="success"}',
    "publish exception": "faststream_published_messages_exceptions_total",
    "processed message": 'faststream_received_processed_messages_total{status="acked"}',
    "processing exception": "faststream_received_processed_messages_exceptions_total",
    "invalid message dead-lettered": 'messaging_dead_letters_total{reason="invalid"}',
    "exhausted message dead-lettered": 'messaging_dead_letters_total{reason="exhausted"}',
    "duplicate skipped": "messaging_duplicates_total",
}


def test_the_traffic_made_everything_happen(scraping: Prometheus) -> None:
    def missing() -> list[str]:
        return [what for what, expr in HAPPENED.items() if not scraping.query(f"sum({expr}) > 0")]

    assert eventually_empty(missing) == []


def test_service_down_fires_when_a_service_stops(scraping: Prometheus, cluster: Cluster) -> None:
    assert cluster[DOOMED_SERVICE].stop() == 0

    def firing() -> set[str]:
        alerts = scraping.get("/api/v1/alerts")["alerts"]
        return {
            a["labels"]["service"]
            for a in alerts
            if a["labels"]["alertname"] == "ServiceDown" and a["state"] == "firing"
        }

    assert wait_for("ServiceDown to fire", firing) == {DOOMED_SERVICE}
