"""Shared fixtures for the local stack's tests (docker-compose.yml and observability/)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack.programs import require_stack_binaries

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "observability"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
GRAFANA_DIR = OBSERVABILITY / "grafana"


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers this marker; declared here too so --strict-markers accepts it
    # when the suite runs without xdist (-p no:xdist).
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")


@pytest.fixture(scope="session")
def stack_binaries() -> dict[str, Path]:
    """Jaeger, Prometheus, promtool and the gateway's Caddy at the compose file's versions, as
    scripts/install-stack.sh built them; a clear failure (never a skip) when one is missing."""
    return require_stack_binaries()


@pytest.fixture(scope="session")
def promtool(stack_binaries: dict[str, Path]) -> str:
    return str(stack_binaries["promtool"])


@pytest.fixture(scope="session")
def prometheus_binary(stack_binaries: dict[str, Path]) -> str:
    return str(stack_binaries["prometheus"])


@pytest.fixture(scope="session")
def jaeger_binary(stack_binaries: dict[str, Path]) -> Path:
    return stack_binaries["jaeger"]


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return load_yaml(REPO / "docker-compose.yml")


@pytest.fixture(scope="session")
def prometheus_config() -> dict[str, Any]:
    """The repository's prometheus.yml; tests get a deep copy they may change."""
    return copy.deepcopy(load_yaml(PROMETHEUS_DIR / "prometheus.yml"))


@pytest.fixture(scope="session")
def rule_files() -> list[Path]:
    files = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
    assert files, "no rule files in observability/prometheus/rules"
    return files


@pytest.fixture(scope="session")
def rules(rule_files: list[Path]) -> list[dict[str, Any]]:
    """Every rule of every group in the repository's rule files."""
    return [
        rule
        for path in rule_files
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


@dataclass(frozen=True)
class DashboardQuery:
    dashboard: str
    panel: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel}: {self.expr}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # Collapsed rows keep their panels inside the row.
        yield from _panels(panel.get("panels", []))


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    files = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    assert files, "no dashboards in observability/grafana/dashboards"
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in files}


@pytest.fixture(scope="session")
def panels(dashboards: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(dashboard file, panel) for every panel that queries something (rows excluded)."""
    return [
        (name, panel)
        for name, dashboard in dashboards.items()
        for panel in _panels(dashboard["panels"])
        if panel.get("type") != "row"
    ]


@pytest.fixture(scope="session")
def dashboard_queries(panels: list[tuple[str, dict[str, Any]]]) -> list[DashboardQuery]:
    queries = [
        DashboardQuery(name, panel["title"], target["expr"])
        for name, panel in panels
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    assert queries, "the dashboards query nothing"
    return queries


@pytest.fixture(scope="session")
def concrete_query() -> Callable[[str, str], str]:
    """Turns a dashboard expression into plain PromQL, as Grafana would before sending it."""

    def render(expr: str, service: str) -> str:
        return (
            expr.replace("$__rate_interval", "1m")
            .replace("${service}", service)
            .replace("$service", service)
        )

    return render
