"""The template's test environment pins what the baked services pin, option by option.

The bake matrix runs every bake's suite in this environment, so a version that differs here
would test something other than what a baked service installs.
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


@pytest.mark.parametrize("messaging", ["nats", "rabbitmq", "kafka", "none"])
def test_every_baked_pin_is_the_test_environments_pin(messaging: str) -> None:
    project = baked_pyproject(messaging)
    wanted = pins(project["project"]["dependencies"])  # type: ignore[index]
    wanted |= pins(project["dependency-groups"]["dev"])  # type: ignore[index]
    available = pins((TEMPLATE / "requirements" / "test.txt").read_text().splitlines())
    mismatched = {
        name: (version, available.get(name))
        for name, version in wanted.items()
        if available.get(name) != version
    }
    assert mismatched == {}, "baked pin -> test environment pin"


def test_every_baked_dependency_is_pinned_exactly() -> None:
    for messaging in ("nats", "rabbitmq", "kafka", "none"):
        project = baked_pyproject(messaging)
        for requirement in project["project"]["dependencies"]:  # type: ignore[index]
            assert "==" in requirement, requirement
