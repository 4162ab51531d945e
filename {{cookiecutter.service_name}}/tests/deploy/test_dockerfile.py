"""The Dockerfile, linted for the rules this service relies on (Docker does not run here).

A small parser reads the instructions (continuation lines joined, comments dropped) and the
tests check: multi-stage, pinned slim base for this Python, dependencies from the lock file,
nothing from the build stage but the virtual environment, a non-root user, the health check
on liveness (and that its command works against the running service), the stop signal, the
port, no secrets, and a .dockerignore that keeps everything else out of the build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass

from service_chassis.testing.servers import free_port, start_service

from {{ cookiecutter.__package_name }} import DEFAULT_HTTP_PORT

from ..conftest import PACKAGE
from .manifests import DOCKERFILE, DOCKERIGNORE, ROOT, app, route_paths

BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|gcc|g\+\+|make|build-essential|pip|uv)\b")


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(stage, keyword.upper(), " ".join(arguments.split())))
    return found


def final_stage() -> list[Instruction]:
    every = instructions()
    return [i for i in every if i.stage == every[-1].stage]


def only(keyword: str, stage: list[Instruction] | None = None) -> list[str]:
    return [i.arguments for i in (stage or instructions()) if i.keyword == keyword]


def test_multi_stage_on_a_pinned_slim_python_of_this_version() -> None:
    # The Python the bake chose: its lint and type target, and the image's.
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    images = [args.split()[0] for args in only("FROM")]
    assert len(images) >= 2
    for image in images:
        assert re.fullmatch(rf"python:{re.escape(python)}\.\d+-slim-[a-z]+", image), image
    copied_from = re.findall(r"--from=(\S+)", " ".join(only("COPY")))
    stage_names = {args.split()[-1] for args in only("FROM") if " AS " in args.upper()}
    for source in copied_from:
        if source not in stage_names:
            assert re.search(r":\d+(\.\d+)+$", source), f"{source} has no version tag"
    text = DOCKERFILE.read_text()
    assert ":latest" not in text


def test_dependencies_install_from_the_lock_file() -> None:
    copies = only("COPY")
    assert "pyproject.toml uv.lock ./" in copies
    syncs = [run for run in only("RUN") if "uv sync" in run]
    assert syncs
    for run in syncs:
        assert "--locked" in run or "--frozen" in run
        assert "--no-dev" in run
    assert not [run for run in only("RUN") if "pip install" in run]


def test_the_final_stage_has_no_build_tools_and_runs_as_non_root() -> None:
    stage = final_stage()
    for run in only("RUN", stage):
        assert not BUILD_TOOLS.search(run.replace("--no-create-home", "")), run
    assert only("COPY", stage) == ["--from=build /app/.venv /app/.venv"]
    (user,) = only("USER", stage)
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) >= 1000


def test_stop_signal_port_and_command() -> None:
    stage = final_stage()
    assert only("STOPSIGNAL", stage) == ["SIGTERM"]
    assert only("EXPOSE", stage) == [str(DEFAULT_HTTP_PORT)]
    env = " ".join(only("ENV", stage))
    assert "HTTP_HOST=0.0.0.0" in env  # a container listens beyond its loopback
    assert f"HTTP_PORT={DEFAULT_HTTP_PORT}" in env
    assert only("CMD", stage) == [f'["python", "-m", "{PACKAGE}"]']


def test_no_secrets_are_baked_in() -> None:
    for args in only("ENV") + only("ARG"):
        assert not re.search(r"(TOKEN|PASSWORD|SECRET|_KEY)\b", args.upper()), args


def _healthcheck() -> tuple[str, list[str]]:
    (healthcheck,) = only("HEALTHCHECK", final_stage())
    options, _, command = healthcheck.partition(" CMD ")
    argv: list[str] = json.loads(command)  # the exec form: no shell in between
    return options, argv


def test_healthcheck_asks_liveness() -> None:
    options, argv = _healthcheck()
    assert "--interval=" in options
    assert "--timeout=" in options
    assert argv[:2] == ["python", "-c"]
    paths = set(re.findall(r"/health/\w+", argv[2]))
    assert paths == {"/health/live"}
    assert paths <= route_paths(app())


def test_healthcheck_command_passes_against_the_running_service() -> None:
    """Run the HEALTHCHECK's Python as the container would, against a real process."""
    _, argv = _healthcheck()
    service = start_service(PACKAGE, {"OTEL_TRACES_EXPORTER": "none"})
    try:
        port = service.base_url.rsplit(":", 1)[1]
        result = _run_healthcheck(argv, port)
    finally:
        service.stop()
    assert result.returncode == 0, result.stderr


def test_healthcheck_command_fails_when_nothing_answers() -> None:
    _, argv = _healthcheck()
    assert _run_healthcheck(argv, str(free_port())).returncode != 0


def _run_healthcheck(argv: list[str], port: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv[1:]],
        env={"HTTP_PORT": port},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rules, simplified: the last matching pattern wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!")
        if any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for sources in only("COPY"):
        if "--from=" in sources:
            continue
        for source in sources.split()[:-1]:
            assert not _ignored(source.rstrip("/"), patterns), source
    assert not _ignored(f"src/{PACKAGE}/app.py", patterns)
    for private in (".venv/bin/python", ".git/config", ".env", "tests/conftest.py", "deploy/k8s"):
        assert _ignored(private, patterns), private
    assert _ignored(f"src/{PACKAGE}/__pycache__/app.cpython-312.pyc", patterns)
