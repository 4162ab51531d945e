"""The stack's README and compose file say what makes traces and checks arrive."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "observability" / "README.md"
COMPOSE = ROOT / "docker-compose.yml"


def test_every_grpc_endpoint_it_shows_comes_with_the_grpc_protocol() -> None:
    """Services speak OTLP/HTTP by default: port 4317 (gRPC) works only with the protocol set
    too, so any place that points an endpoint at 4317 must say so in the same paragraph."""
    paragraphs = re.split(r"\n\s*\n", README.read_text())
    wrong = [
        paragraph.strip()[:200]
        for paragraph in paragraphs
        if re.search(r"OTEL_EXPORTER_OTLP_ENDPOINT[=:]\s*\S*:4317", paragraph)
        and "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" not in paragraph
    ]
    assert wrong == []


def test_containers_that_reach_host_processes_map_the_host_gateway() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("consul", "prometheus"):
        assert "host.docker.internal:host-gateway" in services[name].get("extra_hosts", []), name


def test_it_says_how_a_host_process_advertises_itself_to_consul() -> None:
    text = README.read_text()
    assert "SERVICE_ADDRESS=host.docker.internal" in text
    assert "HTTP_HOST=0.0.0.0" in text
