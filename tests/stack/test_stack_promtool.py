"""promtool on the Prometheus config, the rules and the rules' unit tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack.consul_standin import ConsulStandin
from tests.stack.programs import prometheus_config as prometheus_config_with

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "observability" / "prometheus"

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def run(
    *cmd: str, cwd: Path = PROMETHEUS_DIR, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def prometheus_dir_copy(tmp_path: Path) -> Path:
    """A copy of observability/prometheus, so derived configs resolve the same relative paths."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    return copy


def test_config_as_shipped(promtool: str) -> None:
    # The pinned promtool parses every job, Consul discovery included, and the rule files.
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    for rule_file in RULE_FILES:
        assert rule_file.name in result.stdout


def test_promtool_is_the_version_the_compose_file_pins(
    promtool: str, compose: dict[str, Any]
) -> None:
    pinned = compose["services"]["prometheus"]["image"].rpartition(":v")[2]
    version = run(promtool, "--version").stdout
    assert version.startswith(f"promtool, version {pinned} "), version


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_rules_are_valid(promtool: str, rule_file: Path) -> None:
    result = run(promtool, "check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(promtool: str, test_file: Path) -> None:
    result = run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_and_not_firing(rules: list[dict[str, Any]]) -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    assert alerts, "no alerting rules"
    assert alerts - firing == set(), "alerts never shown firing in a rule unit test"
    assert alerts - silent == set(), "alerts never shown staying silent in a rule unit test"


# --- relabelling, through promtool's own service discovery ---------------------------

# What a baked service with discovery=consul registers (discovery/registration.py), and a
# registration without metrics_path: Consul's own entry is one, and neither may be scraped.
CONSUL_REGISTRATIONS = [
    {
        "ID": "payments-1",
        "Name": "payments",
        "Address": "payments.internal",
        "Port": 8080,
        "Meta": {"metrics_path": "/internal/metrics", "version": "1.2.3"},
    },
    {"ID": "cache-1", "Name": "cache", "Address": "cache.internal", "Port": 6379},
]
UNLABELLED_TARGETS = [{"targets": ["billing:8000", "10.0.0.7:9000"]}]


def discover_all_jobs(
    promtool: str, config_dir: Path, jobs: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Runs `promtool check service-discovery` for every job at once (each waits its timeout)."""
    procs = {
        job: subprocess.Popen(
            [promtool, "check", "service-discovery", "--timeout=3s", "prometheus.yml", job],
            cwd=config_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    }
    results = {}
    for job, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"{job}: {stdout}{stderr}"
        results[job] = json.loads(stdout)
    return results


@pytest.fixture(scope="module")
def discovered(
    promtool: str,
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_config: dict[str, Any],
) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Every job's targets as promtool discovers them: the shipped config, its Consul job
    asking a Consul stand-in, its file job reading the shipped and an unlabelled target file."""
    prometheus_dir_copy = tmp_path_factory.mktemp("discovery") / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, prometheus_dir_copy)
    (prometheus_dir_copy / "targets" / "unlabelled.json").write_text(json.dumps(UNLABELLED_TARGETS))
    standin = ConsulStandin()
    for registration in CONSUL_REGISTRATIONS:
        standin.register(registration)
    with standin.serve() as consul:
        config = prometheus_config_with(
            prometheus_config,
            port=9090,
            consul=consul.url.removeprefix("http://"),
            jaeger_spanmetrics="jaeger:8889",
        )
        (prometheus_dir_copy / "prometheus.yml").write_text(yaml.safe_dump(config))
        jobs = [job["job_name"] for job in config["scrape_configs"]]
        yield discover_all_jobs(promtool, prometheus_dir_copy, jobs)
        # Prometheus asked what its Consul discovery asks: the datacenter, then the catalog
        # and each service's health, as blocking queries.
        assert consul.calls_to("GET", "/v1/agent/self")
        assert consul.calls_to("GET", "/v1/catalog/services")
        asked = {c.path for c in consul.calls_to("GET", "/v1/health/service/")}
        assert asked == {f"/v1/health/service/{name}" for name in ("consul", "payments", "cache")}


def scraped(targets: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Labels of the targets that survive relabelling (dropped ones have none)."""
    return [target["labels"] for target in targets if target["labels"]]


def test_every_job_labels_every_target_with_its_service(
    discovered: dict[str, list[dict[str, Any]]],
) -> None:
    for job, targets in discovered.items():
        kept = scraped(targets)
        assert kept, f"job {job} discovered no target"
        for labels in kept:
            assert labels.get("service"), (
                f"job {job}: target {labels['instance']} has no service label"
            )


def test_file_targets_keep_their_service_label_or_take_the_host(
    discovered: dict[str, list[dict[str, Any]]],
) -> None:
    services = {labels["instance"]: labels["service"] for labels in scraped(discovered["services"])}
    assert services == {
        "host.docker.internal:8000": "example",
        "billing:8000": "billing",
        "10.0.0.7:9000": "10.0.0.7",
    }


def test_consul_services_are_scraped_on_their_declared_metrics_path(
    discovered: dict[str, list[dict[str, Any]]],
) -> None:
    # Prometheus 3 adds internal labels of its own (histogram handling); these are the job's.
    shown = {"__address__", "__metrics_path__", "__scheme__", "__scrape_interval__"}
    labels = [
        {k: v for k, v in target.items() if not k.startswith("__") or k in shown}
        for target in scraped(discovered["consul-services"])
    ]
    assert labels == [
        {
            "__address__": "payments.internal:8080",
            "__metrics_path__": "/internal/metrics",
            "__scheme__": "http",
            "__scrape_interval__": "15s",
            "instance": "payments.internal:8080",
            "job": "consul-services",
            "service": "payments",
            "service_instance_id": "payments-1",
        }
    ]
    dropped = [t["discoveredLabels"] for t in discovered["consul-services"] if not t["labels"]]
    assert sorted(d["__meta_consul_service"] for d in dropped) == ["cache", "consul"]


def test_consul_job_discovers_from_the_stacks_consul(prometheus_config: dict[str, Any]) -> None:
    (job,) = [job for job in prometheus_config["scrape_configs"] if "consul_sd_configs" in job]
    assert [sd["server"] for sd in job["consul_sd_configs"]] == ["consul:8500"]
