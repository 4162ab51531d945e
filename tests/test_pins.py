"""The pins agree: the chassis's, the baked services' and the template's test environment.

The chassis's own suite and the cross-service tests run in the template's environment, so a
version that differs there would test something other than what a baked service installs.
"""

from __future__ import annotations

import re
import tomllib

import jinja2
import pytest

from tests.conftest import TEMPLATE

PIN = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            found[normalise(match.group(1))] = match.group(3)
    return found


def baked_pyproject(messaging: str) -> dict[str, object]:
    source = (TEMPLATE / "{{cookiecutter.service_name}}" / "pyproject.toml").read_text()
    context = {
        "service_name": "svc",
        "__package_name": "svc",
        "description": "d",
        "version": "0.1.0",
        "python_version": "3.11",
        "messaging": messaging,
    }
    rendered = jinja2.Template(source).render(cookiecutter=context)
    return tomllib.loads(rendered)


CHASSIS = TEMPLATE / "chassis"


def chassis_version() -> str:
    text = (CHASSIS / "src" / "service_chassis" / "_version.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', text)
    assert match is not None
    return match.group(1)


def chassis_pins() -> dict[str, str]:
    project = tomllib.loads((CHASSIS / "pyproject.toml").read_text())["project"]
    found = pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        found |= pins(extra)
    return found


def environment_pins() -> dict[str, str]:
    return pins((TEMPLATE / "requirements" / "test.txt").read_text().splitlines())


@pytest.mark.parametrize("messaging", ["nats", "rabbitmq", "kafka", "none"])
def test_every_pin_is_the_test_environments_pin(messaging: str) -> None:
    project = baked_pyproject(messaging)
    wanted = chassis_pins() | pins(project["dependency-groups"]["dev"])  # type: ignore[index]
    wanted.pop("service-chassis")
    available = environment_pins()
    mismatched = {
        name: (version, available.get(name))
        for name, version in wanted.items()
        if available.get(name) != version
    }
    assert mismatched == {}, "pin -> test environment pin"


@pytest.mark.parametrize("messaging", ["nats", "rabbitmq", "kafka", "none"])
def test_the_service_pins_this_chassis_release_and_its_tag(messaging: str) -> None:
    project = baked_pyproject(messaging)
    [requirement] = project["project"]["dependencies"]  # type: ignore[index]
    extra = "" if messaging == "none" else f"[{messaging}]"
    assert requirement == f"service-chassis{extra}=={chassis_version()}"
    source = project["tool"]["uv"]["sources"]["service-chassis"]  # type: ignore[index]
    assert source["tag"] == f"chassis-v{chassis_version()}"
    assert source["subdirectory"] == "chassis"


def test_every_chassis_dependency_is_pinned_exactly() -> None:
    project = tomllib.loads((CHASSIS / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += extra
    for requirement in requirements:
        assert "==" in requirement, requirement


def test_the_changelog_has_an_entry_for_this_version() -> None:
    changelog = (CHASSIS / "CHANGELOG.md").read_text()
    assert f"## {chassis_version()}" in changelog
