"""observability/jaeger/config.yaml: Jaeger v2 (an OpenTelemetry Collector) wiring."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack.programs import JaegerPorts, jaeger_config

CONFIG = Path(__file__).resolve().parents[2] / "observability" / "jaeger" / "config.yaml"


@pytest.fixture(scope="module")
def jaeger() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def test_otlp_receivers_listen_on_all_interfaces(jaeger: dict[str, Any]) -> None:
    # The collector's default is localhost, which other containers cannot reach.
    protocols = jaeger["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"


def test_query_ui_listens_on_all_interfaces(jaeger: dict[str, Any]) -> None:
    assert jaeger["extensions"]["jaeger_query"]["http"]["endpoint"] == "0.0.0.0:16686"


def test_traces_are_kept_in_bounded_memory(jaeger: dict[str, Any]) -> None:
    storage = jaeger["extensions"]["jaeger_storage"]
    traces_backend = jaeger["extensions"]["jaeger_query"]["storage"]["traces"]
    assert jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"] == traces_backend
    max_traces = storage["backends"][traces_backend]["memory"]["max_traces"]
    assert isinstance(max_traces, int)
    assert 0 < max_traces <= 100_000


def test_monitor_tab_reads_span_metrics_from_prometheus(jaeger: dict[str, Any]) -> None:
    metrics_backend = jaeger["extensions"]["jaeger_query"]["storage"]["metrics"]
    prometheus = jaeger["extensions"]["jaeger_storage"]["metric_backends"][metrics_backend][
        "prometheus"
    ]
    assert prometheus["endpoint"] == "http://prometheus:9090"
    # spanmetrics leaves the traces pipeline as an exporter and enters a metrics
    # pipeline as a receiver, which ends in the endpoint Prometheus scrapes.
    pipelines = jaeger["service"]["pipelines"]
    assert "spanmetrics" in pipelines["traces"]["exporters"]
    (metrics_pipeline,) = [p for name, p in pipelines.items() if name.split("/")[0] == "metrics"]
    assert metrics_pipeline["receivers"] == ["spanmetrics"]
    assert metrics_pipeline["exporters"] == ["prometheus"]
    assert jaeger["exporters"]["prometheus"]["endpoint"] == "0.0.0.0:8889"


def test_every_referenced_component_is_defined(jaeger: dict[str, Any]) -> None:
    defined = {
        kind: set(jaeger.get(kind) or {})
        for kind in ("receivers", "processors", "exporters", "connectors")
    }
    for name, pipeline in jaeger["service"]["pipelines"].items():
        for component in pipeline.get("receivers", []):
            assert component in defined["receivers"] | defined["connectors"], f"{name}: {component}"
        for component in pipeline.get("processors", []):
            assert component in defined["processors"], f"{name}: {component}"
        for component in pipeline.get("exporters", []):
            assert component in defined["exporters"] | defined["connectors"], f"{name}: {component}"
    assert set(jaeger["service"]["extensions"]) == set(jaeger["extensions"])


def test_healthcheck_endpoint_matches_compose(
    jaeger: dict[str, Any], compose: dict[str, Any]
) -> None:
    http = jaeger["extensions"]["healthcheckv2"]["http"]
    assert http["endpoint"].startswith("127.0.0.1:")
    url = f"http://{http['endpoint']}{http['status']['path']}"
    assert url in " ".join(compose["services"]["jaeger"]["healthcheck"]["test"])


# --- the pinned Jaeger's own checks ---------------------------------------------------


def validate(jaeger_binary: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(jaeger_binary), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_pinned_jaeger_accepts_the_config(jaeger_binary: Path) -> None:
    result = validate(jaeger_binary, CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pinned_jaeger_rejects_a_broken_config(
    jaeger_binary: Path, jaeger: dict[str, Any], tmp_path: Path
) -> None:
    broken = copy.deepcopy(jaeger)
    broken["service"]["pipelines"]["traces"]["exporters"].append("spanmetricz")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = validate(jaeger_binary, path)
    assert result.returncode != 0
    assert 'references exporter "spanmetricz"' in result.stdout + result.stderr


def test_tests_substitute_addresses_only(jaeger: dict[str, Any]) -> None:
    """The tests run this file with every address replaced by a loopback one, and nothing
    else changed: the substitution knows every address there is."""
    ports = JaegerPorts(*range(40001, 40008))
    running = jaeger_config(ports, "http://127.0.0.1:40009")

    def leaves(node: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
        if isinstance(node, dict):
            return {
                k: v for key, child in node.items() for k, v in leaves(child, (*path, key)).items()
            }
        if isinstance(node, list):
            return {
                k: v for i, child in enumerate(node) for k, v in leaves(child, (*path, i)).items()
            }
        return {path: node}

    shipped, derived = leaves(jaeger), leaves(running)
    assert set(shipped) == set(derived)
    changed = {path for path in shipped if shipped[path] != derived[path]}
    addresses = {
        path for path, value in shipped.items() if path[-1] in {"endpoint", "host", "port"}
    }
    assert changed <= addresses  # (the telemetry host is loopback already)
    assert {str(value) for path, value in derived.items() if path in addresses} == {
        *(f"127.0.0.1:{port}" for port in range(40001, 40007)),
        "127.0.0.1",
        "40007",
        "http://127.0.0.1:40009",
    }


def test_standard_ports_are_the_compose_files(compose: dict[str, Any]) -> None:
    """The ports a user's native Jaeger opens (observability/README.md, Without Docker) are
    those the compose file publishes."""
    ports = JaegerPorts.standard()
    published = {int(port.split(":")[-1]) for port in compose["services"]["jaeger"]["ports"]}
    assert {ports.otlp_grpc, ports.otlp_http, ports.query_http} == published
