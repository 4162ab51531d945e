"""A chassis fix reaches a baked service as a version bump: pin, lock, sync, test.

The template is copied (the chassis with it); a service is baked from the copy, then the copy's
chassis gets a new release (a fix, a version, a changelog entry). In the service, the pin moves
and `uv lock --upgrade-package service-chassis` takes it; nothing else in the service changes,
and the running service reports the new version where the platform looks for it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from tests.conftest import TEMPLATE

IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build"
)
NEW_VERSION = "9.9.9"
VERSION = "import service_chassis; print(service_chassis.__version__)"


def chassis_version() -> str:
    text = (TEMPLATE / "chassis" / "src" / "service_chassis" / "_version.py").read_text()
    match = re.search(r'"([^"]+)"', text)
    assert match is not None
    return match.group(1)


def run(cwd: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.xdist_group("chassis-upgrade")
def test_a_chassis_release_reaches_the_service_as_a_version_bump(tmp_path: Path) -> None:
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template, ignore=IGNORED)
    service = Path(
        cookiecutter(
            str(template),
            no_input=True,
            extra_context={"service_name": "billing", "messaging": "none"},
            output_dir=str(tmp_path / "services"),
        )
    )
    python = service / ".venv" / "bin" / "python"
    run(service, "uv", "sync", "--locked", "--quiet")
    old = run(service, str(python), "-c", VERSION).strip()

    # The platform team releases a fix.
    chassis = template / "chassis"
    version_file = chassis / "src" / "service_chassis" / "_version.py"
    version_file.write_text(f'__version__ = "{NEW_VERSION}"\n')
    changelog = chassis / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace("## ", f"## {NEW_VERSION}\n\n- A fix.\n\n## ", 1)
    )

    # The service takes it: the pin, the lock, the environment. Nothing else changes.
    pyproject = service / "pyproject.toml"
    pin = f"service-chassis=={NEW_VERSION}"
    pyproject.write_text(re.sub(r"service-chassis==[0-9.]+", pin, pyproject.read_text()))
    run(service, "uv", "lock", "--quiet", "--upgrade-package", "service-chassis")
    run(service, "uv", "sync", "--locked", "--quiet")
    new = run(service, str(python), "-c", VERSION).strip()
    assert (old, new) == (chassis_version(), NEW_VERSION)

    # Where the platform looks: the metric label and the span resource.
    shown = run(
        service,
        str(python),
        "-c",
        "from billing.app import create_app; from billing.settings import Settings; "
        "from service_chassis.metrics import render; "
        "app = create_app(Settings(otel_traces_exporter='none')); "
        "print(render(app.state.service.metrics.registry, None)[0].decode()); "
        "print(dict(app.state.service.tracer_provider.resource.attributes))",
    )
    assert f'chassis_version="{NEW_VERSION}"' in shown
    assert f"'telemetry.distro.version': '{NEW_VERSION}'" in shown
    # And the service's own suite still passes on the new release.
    run(service, str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider")
