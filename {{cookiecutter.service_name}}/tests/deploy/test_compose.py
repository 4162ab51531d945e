"""The service's compose file: valid against the Compose Specification, wired to the stack.

The schema is the Compose Specification's JSON schema as vendored by ``check-jsonschema``
(``--builtin-schema vendor.compose-spec``), so the check runs offline. Docker itself does not
run here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from {{ cookiecutter.__package_name }} import DEFAULT_HTTP_PORT, SERVICE_NAME, __version__

from .manifests import COMPOSE, ROOT, has_extension, seconds, setting_names

# Service names of the template's local stack (its docker-compose.yml).
STACK = {"jaeger", "prometheus", "grafana", "nats", "rabbitmq", "kafka", "consul"}


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _service() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    service: dict[str, Any] = compose["services"][SERVICE_NAME]
    return service


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = _check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_wrong_file(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"][SERVICE_NAME]["stop_grace"] = "40s"  # not a Compose key
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert _check(path).returncode != 0


def test_runs_on_the_stacks_network_and_sends_traces_to_jaeger() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    service = _service()
    assert compose["networks"]["observability"] == {"name": "observability", "external": True}
    assert service["networks"][0] == "observability"
    env = service["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_SERVICE_NAME"] == SERVICE_NAME
    assert set(env) <= setting_names() | {"OTEL_EXPORTER_OTLP_PROTOCOL"}
    if has_extension("messaging"):
        broker = env["BROKER_URL"]
        host = urlsplit(broker if "://" in broker else f"//{broker}").hostname
        assert host in STACK
    else:
        assert "BROKER_URL" not in env
    if has_extension("discovery"):
        assert env["CONSUL_HTTP_ADDR"] == "http://consul:8500"


def test_the_database_is_the_services_own() -> None:
    """With a database: its own server on a network only it and the service share, migrated
    before the service starts; without, nothing of it."""
    compose = yaml.safe_load(COMPOSE.read_text())
    service = _service()
    if not has_extension("database"):
        assert "DATABASE_URL" not in service["environment"]
        assert set(compose["services"]) == {SERVICE_NAME}
        return
    database = compose["services"][f"{SERVICE_NAME}-postgres"]
    assert database["profiles"] == ["postgres"]
    assert database["networks"] == ["data"]
    host = urlsplit(service["environment"]["DATABASE_URL"]).hostname
    assert host == f"{SERVICE_NAME}-postgres"
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    migrate = compose["services"]["migrate"]
    assert migrate["command"][-1] == "migrate"
    assert migrate["environment"]["DATABASE_URL"] == service["environment"]["DATABASE_URL"]


def test_builds_this_directory_and_publishes_the_port_on_loopback() -> None:
    service = _service()
    assert (ROOT / service["build"]["context"] / "Dockerfile").is_file()
    assert service["image"] == f"{SERVICE_NAME}:{__version__}"
    assert service["ports"] == [f"127.0.0.1:{DEFAULT_HTTP_PORT}:{DEFAULT_HTTP_PORT}"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]


def test_stop_grace_period_covers_the_shutdown() -> None:
    service = _service()
    env = service["environment"]
    assert service["stop_signal"] == "SIGTERM"
    drain = float(env["SHUTDOWN_DELAY_SECONDS"]) + float(env["SHUTDOWN_GRACE_SECONDS"])
    assert seconds(service["stop_grace_period"]) >= drain + 5
