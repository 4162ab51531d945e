"""promtool on the Prometheus config, the rules and the rules' unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    result = run(promtool, "check", "config", "prometheus.yml")
    output = result.stdout + result.stderr
    if result.returncode == 0:
        assert "SUCCESS" in output
        return
    # A promtool built without Consul discovery (Debian's) may refuse that field and
    # nothing else; test_config_without_consul_discovery checks all the rest.
    unknown_fields = re.findall(r"line \d+: field (\w+) not found", output)
    assert unknown_fields, output
    assert set(unknown_fields) == {"consul_sd_configs"}, output


def test_config_without_consul_discovery(
    promtool: str,
    prometheus_dir_copy: Path,
    prometheus_config: dict[str, Any],
    without_consul_discovery: Callable[[dict[str, Any], list[str]], dict[str, Any]],
) -> None:
    config = without_consul_discovery(prometheus_config, ["targets/*.json"])
    (prometheus_dir_copy / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run(promtool, "check", "config", "prometheus.yml", cwd=prometheus_dir_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    # The rule files and the file_sd target files are checked along with the config.
    for rule_file in RULE_FILES:
        assert rule_file.name in result.stdout


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

CONSUL_TARGETS = [
    {
        "targets": ["payments.internal:8080"],
        "labels": {
            "__meta_consul_service": "payments",
            "__meta_consul_service_id": "payments-1",
            "__meta_consul_service_metadata_metrics_path": "/internal/metrics",
        },
    },
    # Consul registers itself; with no metrics_path it must not be scraped.
    {"targets": ["consul:8300"], "labels": {"__meta_consul_service": "consul"}},
]
UNLABELLED_TARGETS = [{"targets": ["billing:8000", "10.0.0.7:9000"]}]


def discover_all_jobs(
    promtool: str, config_dir: Path, jobs: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Runs `promtool check service-discovery` for every job at once (each waits its timeout)."""
    procs = {
        job: subprocess.Popen(
            [promtool, "check", "service-discovery", "--timeout=2s", "prometheus.yml", job],
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
    without_consul_discovery: Callable[[dict[str, Any], list[str]], dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    prometheus_dir_copy = tmp_path_factory.mktemp("discovery") / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, prometheus_dir_copy)
    (prometheus_dir_copy / "consul.json").write_text(json.dumps(CONSUL_TARGETS))
    (prometheus_dir_copy / "targets" / "unlabelled.json").write_text(json.dumps(UNLABELLED_TARGETS))
    config = without_consul_discovery(prometheus_config, ["consul.json"])
    (prometheus_dir_copy / "prometheus.yml").write_text(yaml.safe_dump(config))
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    return discover_all_jobs(promtool, prometheus_dir_copy, jobs)


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
    assert scraped(discovered["consul-services"]) == [
        {
            "__address__": "payments.internal:8080",
            "__metrics_path__": "/internal/metrics",
            "__scheme__": "http",
            "__scrape_interval__": "15s",
            "__scrape_timeout__": "10s",
            "instance": "payments.internal:8080",
            "job": "consul-services",
            "service": "payments",
            "service_instance_id": "payments-1",
        }
    ]


def test_consul_job_discovers_from_the_stacks_consul(prometheus_config: dict[str, Any]) -> None:
    (job,) = [job for job in prometheus_config["scrape_configs"] if "consul_sd_configs" in job]
    assert [sd["server"] for sd in job["consul_sd_configs"]] == ["consul:8500"]
