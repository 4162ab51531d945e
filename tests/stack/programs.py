"""The stack's programs as real processes: Jaeger v2 and Prometheus 3, as the compose file pins.

scripts/install-stack.sh builds them from their Go modules and says where they are; the helpers
here run them with the repository's configs, changing addresses only (each test takes free
loopback ports), and read them back through the APIs their UIs call. Shared by tests/stack,
tests/e2e and scripts/demo.py.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-stack.sh"
JAEGER_CONFIG = REPO / "observability" / "jaeger" / "config.yaml"
PROMETHEUS_DIR = REPO / "observability" / "prometheus"


class StackMissing(RuntimeError):
    """A stack program is not built: scripts/install-stack.sh has not run."""


def stack_binaries(
    *names: str, build: bool = False, timeout: float | None = 60, show_progress: bool = False
) -> dict[str, Path]:
    """jaeger, prometheus, promtool and caddy, the gateway (or those of `names`: jaeger,
    prometheus, gateway), as scripts/install-stack.sh reports them.

    Without `build` nothing is built: a missing program raises StackMissing with the
    script's own message (run scripts/install-stack.sh). With `show_progress` the script's
    progress goes to this process's stderr.
    """
    command = ["bash", str(INSTALL_SCRIPT), *([] if build else ["--check"]), *names]
    result = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=None if show_progress else subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        message = (result.stderr or "").strip()
        raise StackMissing(message or f"{INSTALL_SCRIPT} exited {result.returncode}")
    paths = {}
    for line in result.stdout.splitlines():
        name, sep, quoted = line.partition("=")  # shell syntax: name=path, the path quoted
        if sep:
            paths[name] = Path(shlex.split(quoted)[0])
    for name, path in paths.items():
        if not path.is_file():
            raise StackMissing(f"{INSTALL_SCRIPT} names {path} for {name}, which is not there")
    return paths


def require_stack_binaries(*names: str) -> dict[str, Path]:
    """stack_binaries() for a test: a clear failure (never a skip) when one is missing."""
    import pytest

    try:
        return stack_binaries(*names)
    except StackMissing as error:
        how = "run scripts/install-stack.sh (make test does) before the tests"
        pytest.fail(f"the stack's programs are not built: {error}\n{how}")


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
    """Polls `check` until it returns something truthy; raises with `what` and the last value."""
    end = time.monotonic() + timeout
    result = None
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}; last result: {result!r}")


def get_json(url: str, timeout: float = 5) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, body.decode(errors="replace")


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running(
    argv: list[str], log_path: Path, ready_url: str, name: str, timeout: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a program, waits until `ready_url` answers 200, and stops it on the way out."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                    )
                return _reachable(ready_url)

            try:
                wait_until(f"{name} at {ready_url}", ready, timeout=timeout)
            except TimeoutError as error:
                raise RuntimeError(f"{error}\n{log_path.read_text()[-4000:]}") from None
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def loopback(port: int) -> str:
    return f"127.0.0.1:{port}"


# --- Jaeger ----------------------------------------------------------------------------

# Every address in observability/jaeger/config.yaml, by where it is. A test substitutes these
# and nothing else (tests/stack/test_stack_jaeger.py checks the list is complete).
JAEGER_ADDRESSES: dict[tuple[str, ...], str] = {
    ("receivers", "otlp", "protocols", "grpc", "endpoint"): "otlp_grpc",
    ("receivers", "otlp", "protocols", "http", "endpoint"): "otlp_http",
    ("extensions", "jaeger_query", "http", "endpoint"): "query_http",
    ("extensions", "jaeger_query", "grpc", "endpoint"): "query_grpc",
    ("extensions", "healthcheckv2", "http", "endpoint"): "health",
    ("exporters", "prometheus", "endpoint"): "spanmetrics",
}
JAEGER_TELEMETRY = (
    *("service", "telemetry", "metrics", "readers", 0),
    *("pull", "exporter", "prometheus"),
)
JAEGER_METRICS_BACKEND = ("extensions", "jaeger_storage", "metric_backends")


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    _at(node, path[:-1])[path[-1]] = value


@dataclass(frozen=True)
class JaegerPorts:
    otlp_grpc: int
    otlp_http: int
    query_http: int
    query_grpc: int
    health: int
    spanmetrics: int
    telemetry: int

    @classmethod
    def free(cls) -> JaegerPorts:
        return cls(*(free_port() for _ in range(7)))

    @classmethod
    def standard(cls) -> JaegerPorts:
        """The ports of observability/jaeger/config.yaml and the compose file."""
        config = yaml.safe_load(JAEGER_CONFIG.read_text())
        ports = {
            name: int(str(_at(config, path)).rsplit(":", 1)[1])
            for path, name in JAEGER_ADDRESSES.items()
        }
        return cls(**ports, telemetry=int(_at(config, JAEGER_TELEMETRY)["port"]))


def jaeger_config(ports: JaegerPorts, prometheus_url: str) -> dict[str, Any]:
    """observability/jaeger/config.yaml with loopback addresses and the given Prometheus."""
    config = yaml.safe_load(JAEGER_CONFIG.read_text())
    for path, name in JAEGER_ADDRESSES.items():
        _set(config, path, loopback(getattr(ports, name)))
    telemetry = _at(config, JAEGER_TELEMETRY)
    telemetry["host"], telemetry["port"] = "127.0.0.1", ports.telemetry
    for backend in _at(config, JAEGER_METRICS_BACKEND).values():
        backend["prometheus"]["endpoint"] = prometheus_url
    return config


SPAN_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
# Tags Jaeger derives from OTLP fields rather than from span attributes.
JAEGER_DERIVED_TAGS = {
    "span.kind",
    "otel.scope.name",
    "otel.scope.version",
    "otel.status_code",
    "otel.status_description",
    "error",
    "w3c.tracestate",
}


@dataclass
class JaegerSpan:
    """A span as Jaeger's query API returns it, in the receiver's shape (OTLP kinds)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    name: str
    kind: int
    attributes: dict[str, Any]
    tags: dict[str, Any]
    links: list[tuple[str, str]]
    start_ns: int
    duration_ms: float
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def status_code(self) -> str:
        return str(self.tags.get("otel.status_code", "UNSET"))


def _tags(tags: list[dict[str, Any]]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in tags}


def spans_of(trace: Mapping[str, Any]) -> list[JaegerSpan]:
    """The spans of one trace of `/api/traces` or `/api/traces/<id>`."""
    processes = trace["processes"]
    spans = []
    for span in trace["spans"]:
        tags = _tags(span.get("tags") or [])
        references = span.get("references") or []
        parents = [r["spanID"] for r in references if r["refType"] == "CHILD_OF"]
        links = [(r["traceID"], r["spanID"]) for r in references if r["refType"] == "FOLLOWS_FROM"]
        process = processes[span["processID"]]
        spans.append(
            JaegerSpan(
                trace_id=span["traceID"],
                span_id=span["spanID"],
                parent_span_id=parents[0] if parents else "",
                service=process["serviceName"],
                name=span["operationName"],
                kind=SPAN_KINDS.get(str(tags.get("span.kind", "internal")), 0),
                attributes={k: v for k, v in tags.items() if k not in JAEGER_DERIVED_TAGS},
                tags=tags,
                links=links,
                start_ns=int(span["startTime"]) * 1000,
                duration_ms=int(span["duration"]) / 1000,
                resource=_tags(process.get("tags") or []),
            )
        )
    return spans


@dataclass
class Jaeger:
    """A Jaeger's addresses and its query API (what its UI calls)."""

    ports: JaegerPorts
    log: Path

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports.query_http}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_grpc}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_http}"

    @property
    def spanmetrics_address(self) -> str:
        return loopback(self.ports.spanmetrics)

    def trace_url(self, trace_id: str) -> str:
        return f"{self.ui}/trace/{trace_id}"

    def api(self, path: str, params: Mapping[str, Any] | list[tuple[str, Any]] = ()) -> Any:
        """GET /api<path>: the `data` of a successful answer; raises on an error answer."""
        query = urllib.parse.urlencode(params, doseq=True)
        status, body = get_json(f"{self.ui}/api{path}" + (f"?{query}" if query else ""))
        if status != 200 or not isinstance(body, dict) or body.get("errors"):
            raise JaegerError(status, path, body)
        return body.get("data") if "data" in body else body

    def trace(self, trace_id: str) -> list[JaegerSpan]:
        """The spans of a trace; [] while Jaeger has none of it."""
        try:
            (trace,) = self.api(f"/traces/{trace_id}")
        except JaegerError as error:
            if error.status == 404:
                return []
            raise
        return spans_of(trace)

    def services(self) -> list[str]:
        return sorted(self.api("/services") or [])

    def operations(self, service: str) -> list[str]:
        path = f"/services/{urllib.parse.quote(service, safe='')}/operations"
        return sorted(self.api(path) or [])

    def search(
        self,
        service: str,
        operation: str | None = None,
        tags: Mapping[str, Any] | None = None,
        lookback: str = "1h",
        limit: int = 20,
    ) -> list[str]:
        """Trace ids the UI's search finds (newest first), as its Find Traces button asks."""
        params: dict[str, Any] = {"service": service, "lookback": lookback, "limit": limit}
        if operation is not None:
            params["operation"] = operation
        if tags:
            params["tags"] = json.dumps({k: str(v) for k, v in tags.items()})
        end = int(time.time() * 1_000_000)
        params.update(start=end - 3600 * 1_000_000, end=end)
        return [trace["traceID"] for trace in self.api("/traces", params) or []]

    def metrics(self, kind: str, service: str, **params: Any) -> dict[str, Any]:
        """`/api/metrics/<kind>` (calls, errors, latencies) for one service, as the Monitor tab
        asks: server spans, per operation, the last hour in one-minute steps."""
        query: dict[str, Any] = {
            "service": service,
            "endTs": int(time.time() * 1000),
            "lookback": 3_600_000,
            "step": 60_000,
            "ratePer": 600_000,
            "spanKind": "server",
            **params,
        }
        return dict(self.api(f"/metrics/{kind}", query))


def send_client_span(
    jaeger: Jaeger,
    service: str,
    trace_id: str,
    span_id: str,
    start_ns: int,
    end_ns: int,
    status: int,
) -> None:
    """A caller's own client span for a request it made with `traceparent` 00-trace-span-01,
    sent to Jaeger as OTLP/JSON: the trace's root, so Jaeger finds no parent missing."""
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "POST",
        "kind": SPAN_KINDS["client"],
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [
            {"key": "http.request.method", "value": {"stringValue": "POST"}},
            {"key": "http.response.status_code", "value": {"intValue": str(status)}},
        ],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    request = urllib.request.Request(
        f"{jaeger.otlp_http_endpoint}/v1/traces",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        if response.status != 200:
            raise JaegerError(response.status, "/v1/traces", response.read())


class JaegerError(RuntimeError):
    def __init__(self, status: int, path: str, body: Any) -> None:
        super().__init__(f"Jaeger answered {status} to {path}: {body!r}"[:2000])
        self.status = status
        self.body = body


@contextlib.contextmanager
def run_jaeger(
    binary: Path,
    workdir: Path,
    ports: JaegerPorts | None = None,
    prometheus_url: str | None = None,
) -> Iterator[Jaeger]:
    """Jaeger with observability/jaeger/config.yaml, on loopback ports (free ones by default).

    Without a Prometheus, the Monitor tab's backend points at a port nothing listens on:
    Jaeger starts all the same and only its /api/metrics answers fail.
    """
    ports = ports or JaegerPorts.free()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "jaeger.yaml"
    config = jaeger_config(ports, prometheus_url or f"http://127.0.0.1:{free_port()}")
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    jaeger = Jaeger(ports, workdir / "jaeger.log")
    health = f"http://127.0.0.1:{ports.health}/status"
    with running([str(binary), "--config", str(config_path)], jaeger.log, health, "Jaeger"):
        wait_until("Jaeger's query API", lambda: _reachable(f"{jaeger.ui}/api/services"))
        yield jaeger


# --- Prometheus --------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str

    def get(self, path: str, **params: str) -> Any:
        status, body = get_json(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        if not isinstance(body, dict) or body.get("status") != "success":
            raise AssertionError(f"Prometheus answered {status} to {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result


def prometheus_config(
    config: dict[str, Any],
    *,
    port: int,
    consul: str,
    jaeger_spanmetrics: str,
) -> dict[str, Any]:
    """The repository's prometheus.yml with the stack's addresses replaced by loopback ones:
    Consul's (consul:8500), Jaeger's span metrics (jaeger:8889) and its own (localhost:9090)."""
    config = copy.deepcopy(config)
    replacements = {
        "consul:8500": consul,
        "jaeger:8889": jaeger_spanmetrics,
        "localhost:9090": loopback(port),
    }
    for job in config["scrape_configs"]:
        for sd in job.get("consul_sd_configs", []):
            sd["server"] = replacements[sd["server"]]
        for static in job.get("static_configs", []):
            static["targets"] = [replacements[target] for target in static["targets"]]
    return config


@contextlib.contextmanager
def run_prometheus(
    binary: Path,
    config_dir: Path,
    port: int,
    extra_flags: tuple[str, ...] = (),
) -> Iterator[Prometheus]:
    """Prometheus with `config_dir`/prometheus.yml (relative paths resolve there), as the
    compose file runs it (exemplar storage, lifecycle API), on a loopback port."""
    argv = [
        str(binary),
        f"--config.file={config_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={config_dir / 'data'}",
        f"--web.listen-address={loopback(port)}",
        "--enable-feature=exemplar-storage",
        "--web.enable-lifecycle",
        *extra_flags,
    ]
    ready = f"http://{loopback(port)}/-/ready"
    with running(argv, config_dir / "prometheus.log", ready, "Prometheus"):
        yield Prometheus(f"http://{loopback(port)}")
