"""The bake matrix: every messaging x discovery combination on the default Python, each
broker with database=postgres, and the other Pythons once each. Each bake is linted, typed
and tested in its own environment, made
by ``uv sync --locked`` on its own Python version, as a service owner's CI would.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from tests.conftest import TEMPLATE
from tests.pythons import python_executable

OPTIONS = json.loads((TEMPLATE / "cookiecutter.json").read_text())

MATRIX: dict[str, dict[str, Any]] = {
    f"{messaging}-{discovery}": {"messaging": messaging, "discovery": discovery}
    for messaging, discovery in itertools.product(OPTIONS["messaging"], OPTIONS["discovery"])
}
# With a database: once per broker (discovery does not meet the database anywhere).
MATRIX |= {
    f"{messaging}-postgres": {"messaging": messaging, "database": "postgres"}
    for messaging in OPTIONS["messaging"]
}
MATRIX["nats-kubernetes"] |= {"service_name": "orders"}
MATRIX["rabbitmq-consul"] |= {"service_name": "customer-billing-service", "python_version": "3.12"}
MATRIX["kafka-none"] |= {"service_name": "inventory", "python_version": "3.13"}
# The example saga needs the database: baked once, with the broker most bakes use.
MATRIX["nats-postgres"] |= {"saga": "place-order"}

# `{{`, `{%` and `{#` left in a baked file mean a template expression that was never rendered.
# GitHub Actions expressions (`${{ ... }}`) are legitimate in workflow files.
LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|\{#")
TEXT_SUFFIXES = {".py", ".toml", ".md", ".yml", ".yaml", ".json", ".txt", ".cfg", ".ini", ""}


def bake(output_dir: Path, **answers: Any) -> Path:
    project = cookiecutter(
        str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output_dir)
    )
    return Path(project)


def run(project: Path, *command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


def sync(project: Path, python_version: str) -> Path:
    """The bake's own environment from its lock, on its Python; returns its interpreter."""
    python = python_executable(python_version)
    assert_ok(run(project, "uv", "sync", "--locked", "--quiet", "--python", python))
    return project / ".venv" / "bin" / "python"


@pytest.fixture(
    scope="module",
    # One xdist group per bake: its checks run on one worker, which bakes it once.
    params=[pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in MATRIX],
    ids=list(MATRIX),
)
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp(request.param)
    return bake(output, **MATRIX[request.param])


@pytest.fixture(scope="module")
def venv_python(baked: Path) -> Path:
    version = json.loads((baked / ".cruft.json").read_text())["context"]["cookiecutter"][
        "python_version"
    ]
    return sync(baked, version)


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
def test_runs_on_its_python_version(baked: Path, venv_python: Path) -> None:
    wanted = json.loads((baked / ".cruft.json").read_text())["context"]["cookiecutter"][
        "python_version"
    ]
    result = run(baked, str(venv_python), "-c", "import sys; print(sys.version)")
    assert_ok(result)
    assert result.stdout.startswith(wanted + ".")


@pytest.mark.bake
def test_ruff_check(baked: Path, venv_python: Path) -> None:
    assert_ok(run(baked, str(venv_python), "-m", "ruff", "check", "--no-cache", "."))


@pytest.mark.bake
def test_ruff_format(baked: Path, venv_python: Path) -> None:
    assert_ok(run(baked, str(venv_python), "-m", "ruff", "format", "--check", "--no-cache", "."))


@pytest.mark.bake
def test_mypy_strict(baked: Path, venv_python: Path) -> None:
    assert_ok(run(baked, str(venv_python), "-m", "mypy", "--no-incremental"))


@pytest.mark.bake
def test_own_suite(baked: Path, venv_python: Path) -> None:
    result = run(baked, str(venv_python), "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert_ok(result)
    assert " passed" in result.stdout.splitlines()[-1]


@pytest.mark.bake
def test_is_a_thin_service_on_the_chassis(baked: Path) -> None:
    """The mechanisms come from the chassis: the service's own code is its wiring and example."""
    # Migrations are the schema's history, not code to read: not counted.
    source = [p for p in (baked / "src").rglob("*.py") if "migrations" not in p.parts]
    sizes = {p.relative_to(baked).as_posix(): len(p.read_text().splitlines()) for p in source}
    # The example (example/ and the saga example's tables) is the owner's to replace: its modules
    # are bounded one by one; the wiring around it is bounded as a whole.
    example = {path for path in sizes if "/example/" in path or path.endswith("saga_models.py")}
    wiring = sum(lines for path, lines in sizes.items() if path not in example)
    assert wiring < 250, f"{wiring} lines of wiring in src/: {sizes}"
    assert all(sizes[path] < 200 for path in example), sizes
    pyproject = (baked / "pyproject.toml").read_text()
    assert re.search(r'"service-chassis(\[[\w,]+\])?==[0-9.]+"', pyproject)


@pytest.mark.xdist_group("example-removed")
def test_deleting_the_example_leaves_a_working_service(tmp_path: Path) -> None:
    project = bake(tmp_path, service_name="blank", messaging="nats", discovery="consul")
    shutil.rmtree(project / "src" / "blank" / "example")
    shutil.rmtree(project / "tests" / "example")
    python = sync(project, "3.11")
    for check in (
        ("ruff", "check", "--no-cache", "."),
        ("ruff", "format", "--check", "--no-cache", "."),
        ("mypy", "--no-incremental"),
        ("pytest", "-q", "-p", "no:cacheprovider"),
    ):
        assert_ok(run(project, str(python), "-m", *check))
    openapi = run(
        project,
        str(python),
        "-c",
        "import json; from blank.app import create_app; "
        "print(json.dumps(sorted(create_app().openapi()['paths'])))",
    )
    assert_ok(openapi)
    [paths] = [line for line in openapi.stdout.splitlines() if line.startswith("[")]
    assert json.loads(paths) == ["/health/live", "/health/ready"]
    # A bare client in service code is refused, with what to use instead.
    (project / "src" / "blank" / "calls.py").write_text(
        "import httpx\n\nCLIENT = httpx.AsyncClient()\n"
    )
    refused = run(project, str(python), "-m", "ruff", "check", "--no-cache", "src")
    assert refused.returncode == 1
    assert "TID251" in refused.stdout
    assert "declared downstream" in refused.stdout


def test_option_values_are_all_covered() -> None:
    for option in ("messaging", "discovery", "database", "python_version"):
        used = {answers.get(option, OPTIONS[option][0]) for answers in MATRIX.values()}
        assert used == set(OPTIONS[option]), option


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
    answers = "inventory\n\n\n\n8001\n2\n\n\n\n\n"
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
    """The bake's uv.lock matches its pyproject.toml and chassis source."""
    assert_ok(run(baked, "uv", "lock", "--check"))


def test_seed_locks_are_current() -> None:
    """The seed locks resolve what the baked pyproject.toml asks (scripts/lock.py renews them):
    a bake's `uv lock` then keeps every version its seed holds."""
    assert_ok(run(TEMPLATE, sys.executable, "scripts/lock.py", "--check"))
