"""The database's migrations run before the new version serves: an init container of every
pod runs ``migrate`` from the same image, with the same settings and restrictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.__package_name }} import SERVICE_NAME

from .kustomize import build, find
from .manifests import BASE, OVERLAYS


@pytest.fixture(scope="module", params=[BASE, *OVERLAYS], ids=lambda path: path.name)
def pod(request: pytest.FixtureRequest) -> dict[str, Any]:
    build_dir: Path = request.param
    spec: dict[str, Any] = find(build(build_dir), "Deployment", SERVICE_NAME)["spec"]["template"][
        "spec"
    ]
    return spec


def test_an_init_container_migrates_before_the_service_starts(pod: dict[str, Any]) -> None:
    (init,) = pod["initContainers"]
    (container,) = pod["containers"]
    assert init["command"][-1] == "migrate"
    assert init["command"][:3] == ["python", "-m", "{{ cookiecutter.__package_name }}"]
    assert init["image"] == container["image"]
    assert init["envFrom"][0] == container["envFrom"][0]
    assert init["envFrom"][1]["secretRef"]["name"] == f"{SERVICE_NAME}-secrets"
    assert init["securityContext"] == container["securityContext"]
