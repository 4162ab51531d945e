"""The bake matrix: every option value at least once, each bake linted, typed and tested.

Each bake runs its own checks with the interpreter running these tests, whose environment
holds the dependencies of every option (requirements/test.txt), so no bake builds a venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from tests.conftest import TEMPLATE

MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "rabbitmq-consul": {
        "service_name": "customer-billing-service",
        "messaging": "rabbitmq",
        "discovery": "consul",
        "python_version": "3.12",
    },
    "kafka-none": {
        "service_name": "inventory",
        "messaging": "kafka",
        "discovery": "none",
        "python_version": "3.13",
    },
    "none-consul": {"service_name": "notifier", "messaging": "none", "discovery": "consul"},
}

# `{{`, `{%` and `{#` left in a baked file mean a template expression that was never rendered.
# GitHub Actions expressions (`${{ ... }}`) are legitimate in workflow files.
LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|\{#")
TEXT_SUFFIXES = {".py", ".toml", ".md", ".yml", ".yaml", ".json", ".txt", ".cfg", ".ini", ""}


def bake(output_dir: Path, **answers: Any) -> Path:
    project = cookiecutter(
        str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output_dir)
    )
    return Path(project)


@pytest.fixture(
    scope="module",
    # One xdist group per bake: its checks run on one worker, which bakes it once.
    params=[pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in MATRIX],
    ids=list(MATRIX),
)
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp(request.param)
    return bake(output, **MATRIX[request.param])


def run(project: Path, *command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


@pytest.mark.bake
def test_no_template_expression_is_left(baked: Path) -> None:
    leftovers = []
    for path in baked.rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if LEFTOVER.search(line):
                    leftovers.append(f"{path.relative_to(baked)}:{number}: {line.strip()}")
    assert leftovers == []


@pytest.mark.bake
def test_ruff_check(baked: Path) -> None:
    assert_ok(run(baked, sys.executable, "-m", "ruff", "check", "--no-cache", "."))


@pytest.mark.bake
def test_ruff_format(baked: Path) -> None:
    assert_ok(run(baked, sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."))


@pytest.mark.bake
def test_mypy_strict(baked: Path) -> None:
    assert_ok(run(baked, sys.executable, "-m", "mypy", "--no-incremental"))


@pytest.mark.bake
def test_own_suite(baked: Path) -> None:
    result = run(baked, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert_ok(result)
    assert " passed" in result.stdout.splitlines()[-1]


def test_option_values_are_all_covered() -> None:
    import json

    options = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    for option in ("messaging", "discovery", "python_version"):
        used = {answers.get(option, options[option][0]) for answers in MATRIX.values()}
        assert used == set(options[option]), option


def test_bad_answer_stops_the_bake_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, service_name="Order Service")
    assert list(tmp_path.iterdir()) == []


def test_bad_answer_message_says_what_to_type(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            str(TEMPLATE),
            "--no-input",
            "-o",
            str(tmp_path),
            "service_name=json",
            "http_port=80",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "'json-service'" in result.stderr
    assert "such as 8000" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plain_cookiecutter_prompts_bake_a_service(tmp_path: Path) -> None:
    # Answers typed at the prompts: a name, three defaults, a port, a choice by number, ...
    answers = "inventory\n\n\n\n8001\n2\n\n\n"
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(TEMPLATE), "-o", str(tmp_path)],
        input=answers,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    readme = (tmp_path / "inventory" / "README.md").read_text()
    assert "messaging: `rabbitmq`" in readme
    assert "python -m inventory   # start it on port 8001" in readme
    assert "Baked inventory" in result.stdout


@pytest.mark.bake
def test_lock_is_current(baked: Path) -> None:
    """The shipped uv.lock matches the bake's pyproject.toml (scripts/lock.py renews them)."""
    assert_ok(run(baked, "uv", "lock", "--check"))
