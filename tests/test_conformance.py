"""The conformance command (scripts/conformance.py) against real services, from outside.

It fails, with a line that says why, against a FastAPI service with FastAPI's default error
handling and no metrics; it passes against every bake of the matrix, each run as a real process
with its real broker (NATS on 127.0.0.1:4222 and RabbitMQ on 127.0.0.1:5672 as .ci/run starts
them; Kafka as librdkafka's mock cluster from the confluent-kafka wheel).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import confluent_kafka
import httpx
import pytest

from tests.conftest import TEMPLATE
from tests.net import free_port, port_open
from tests.test_bake import MATRIX, bake

COMMAND = TEMPLATE / "scripts" / "conformance.py"
CHECKER = TEMPLATE / "chassis" / "src" / "service_chassis" / "conformance.py"
BROKERS = {
    "nats": ("nats://127.0.0.1:4222", 4222),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672/", 5672),
}

# FastAPI's defaults: errors as {"detail": ...} in application/json, no metrics, no tracing.
NONCONFORMING_APP = """
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

app = FastAPI(title="legacy", version="1.0.0")


class Item(BaseModel):
    name: str


@app.get("/health/live")
def live() -> JSONResponse:
    return JSONResponse({"status": "pass"}, media_type="application/health+json")


@app.get("/health/ready")
def ready() -> JSONResponse:
    return JSONResponse({"status": "pass", "checks": {}}, media_type="application/health+json")


@app.post("/items")
def create(item: Item) -> Item:
    return item
"""


def running(command: list[str], env: Mapping[str, str], port: int) -> Iterator[str]:
    """Run ``command`` until the test is done; yield its base URL once it answers."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, text=True
        )

        def output() -> str:
            log.seek(0)
            return log.read()

        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, f"{command} exited early:\n{output()}"
                assert time.monotonic() < deadline, f"{command} did not answer:\n{output()}"
                try:
                    httpx.get(base_url + "/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def conformance(base_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(COMMAND), base_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines_by_rule(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition("  ")
        rule, _, why = rest.strip().partition("  ")
        if status in {"PASS", "FAIL", "SKIP"}:
            found[rule] = f"{status} {why.strip()}"
    return found


@pytest.fixture(scope="module")
def nonconforming_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("legacy")
    (directory / "legacy.py").write_text(NONCONFORMING_APP)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "legacy:app", "--port", str(port)]
    command += ["--app-dir", str(directory), "--log-level", "warning"]
    yield from running(command, {}, port)


def test_the_command_is_the_checker_every_bake_carries() -> None:
    # One copy of the rules: the command runs the chassis's file, it defines no rules itself.
    assert CHECKER.is_file()
    assert "def " not in COMMAND.read_text()


def test_fails_with_a_clear_line_per_broken_rule(nonconforming_service: str) -> None:
    result = conformance(nonconforming_service)
    assert result.returncode == 1, result.stdout + result.stderr
    rules = lines_by_rule(result.stdout)
    assert rules["liveness"].startswith("PASS")
    assert rules["readiness"].startswith("PASS")
    assert rules["openapi"].startswith("PASS")
    expected = "answered application/json, expected application/problem+json"
    assert rules["unknown-route"].startswith("FAIL GET /conformance-")
    assert rules["unknown-route"].endswith(expected)
    assert rules["wrong-method"] == f"FAIL DELETE /items {expected}"
    assert rules["invalid-body"] == f'FAIL POST /items with body ["not", "an", "object"] {expected}'
    assert rules["traceparent"].endswith(expected)
    assert rules["metrics"] == "FAIL GET /metrics answered 404, expected 200"
    assert rules["exemplars"] == "FAIL GET /metrics (OpenMetrics) answered 404, expected 200"
    assert result.stdout.splitlines()[-1] == "conformance: 3 passed, 6 failed"


@pytest.fixture
def kafka_url() -> Iterator[str]:
    # The mock cluster lives inside this producer's librdkafka instance, as long as it does.
    cluster = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    [node] = cluster.list_topics(timeout=10).brokers.values()
    yield f"{node.host}:{node.port}"
    cluster.flush(5)


def broker_env(name: str, messaging: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if messaging == "none":
        return {}
    if messaging == "kafka":
        url = request.getfixturevalue("kafka_url")
    else:
        url, port = BROKERS[messaging]
        if not port_open(port):
            pytest.fail(f"{messaging} is not running on 127.0.0.1:{port}: start it (see .ci/run)")
    # Destinations of this test's own, the same on every run so nothing piles up on the broker.
    prefix = f"conformance-{name}"
    return {
        "BROKER_URL": url,
        "MESSAGING_DESTINATION": f"{prefix}.events",
        "MESSAGING_DEAD_LETTER_DESTINATION": f"{prefix}.events.dlq",
        "MESSAGING_CONSUMER_GROUP": prefix,
    }


# One bake per broker: the rules do not depend on discovery (the bake matrix covers that).
CONFORMANCE = ("nats-kubernetes", "rabbitmq-consul", "kafka-none", "none-consul")


@pytest.mark.bake
@pytest.mark.parametrize("name", CONFORMANCE)
def test_passes_against_every_bake(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    answers = MATRIX[name]
    messaging = answers.get("messaging", "nats")
    project = bake(tmp_path, **answers)
    package = project.name.replace("-", "_")
    port = free_port()
    env = {
        "PYTHONPATH": str(project / "src"),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "OTEL_TRACES_EXPORTER": "none",
        "MESSAGING_BROKER": messaging,
        # Consul bakes: an agent address where nothing listens; registration keeps retrying.
        "CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        **broker_env(name, messaging, request),
    }
    for base_url in running([sys.executable, "-m", package], env, port):
        result = conformance(base_url)
        assert result.returncode == 0, result.stdout + result.stderr
        rules = lines_by_rule(result.stdout)
        assert all(line.startswith("PASS") for line in rules.values()), result.stdout
        if messaging != "none":
            # Ready with its broker connected: the service ran with the real thing.
            assert rules["readiness"].startswith("PASS GET /health/ready: 200"), result.stdout
            assert f"{messaging}:connection" in rules["readiness"], result.stdout
