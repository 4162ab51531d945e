"""Template updates reach a service baked long ago: plain cookiecutter bake, then cruft.

The template is copied into a git repository of the test's own; a service is baked from its
first commit with plain cookiecutter (hooks/post_gen_project.py records ``.cruft.json``), the
service commits changes of its own, the template commits a new standard, and ``cruft update``
brings the standard in without losing the service's changes. Where both changed the same
lines, the update leaves git's conflict markers for the owner to resolve.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE

SERVICE = "ledger"
PACKAGE = "ledger"
BAKED = "{{cookiecutter.service_name}}"
# Cookiecutter needs only these; caches and the template's own tooling stay behind.
TEMPLATE_PARTS = ("cookiecutter.json", "hooks", BAKED)
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*_cache", ".hypothesis", ".venv")

NEW_STANDARD = (
    '\n\n# A standard the platform team added after the service was baked.\nSTANDARD = "v2"\n'
)
NEW_FILE = "STANDARDS.md"
NEW_FILE_TEXT = "# Standards\n\n{{ cookiecutter.service_name }} follows the platform's standards.\n"
OWN_CODE = '\n\ndef own_code() -> str:\n    return "the service\'s own"\n'


def git(directory: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    result = subprocess.run(
        ["git", *args], cwd=directory, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)}\n{result.stdout}{result.stderr}"
    return result.stdout.strip()


def commit_all(directory: Path, message: str) -> str:
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", message)
    return git(directory, "rev-parse", "HEAD")


def cruft(service: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cruft", *args],
        cwd=service,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@dataclass
class Setup:
    template: Path
    service: Path
    baked_commit: str

    def template_file(self, relative: str) -> Path:
        return self.template / BAKED / relative.replace(PACKAGE, "{{cookiecutter.__package_name}}")


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    template = tmp_path / "template"
    template.mkdir()
    for part in TEMPLATE_PARTS:
        source = TEMPLATE / part
        if source.is_dir():
            shutil.copytree(source, template / part, ignore=IGNORED)
        else:
            shutil.copy2(source, template / part)
    git(template, "init", "-q", "-b", "main")
    baked_commit = commit_all(template, "Template, as the service is baked from it")

    services = tmp_path / "services"
    command = [sys.executable, "-m", "cookiecutter", str(template), "--no-input"]
    command += ["-o", str(services), f"service_name={SERVICE}", "messaging=none"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    service = services / SERVICE
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "Bake from the service template")
    return Setup(template, service, baked_commit)


def test_the_bake_records_what_cruft_needs(setup: Setup) -> None:
    state = json.loads((setup.service / ".cruft.json").read_text())
    assert state["template"] == str(setup.template.resolve())
    assert state["commit"] == setup.baked_commit
    answers = state["context"]["cookiecutter"]
    assert answers["service_name"] == SERVICE
    assert answers["messaging"] == "none"
    assert answers["_commit"] == setup.baked_commit
    # Nothing about the run itself (output folder, clone folder) is recorded.
    assert not {"_output_dir", "_repo_dir"} & set(answers)

    checked = cruft(setup.service, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_update_brings_the_template_change_and_keeps_the_services_own(setup: Setup) -> None:
    metrics = f"src/{PACKAGE}/settings.py"
    items = f"src/{PACKAGE}/example/items.py"
    # The service's own work, committed.
    with (setup.service / items).open("a") as file:
        file.write(OWN_CODE)
    (setup.service / f"src/{PACKAGE}/example/own.py").write_text('"""The service\'s own module."""\n')
    commit_all(setup.service, "Own code")
    # A new standard in the template: a change to a file the service did not touch, a new file.
    with setup.template_file(metrics).open("a") as file:
        file.write(NEW_STANDARD)
    (setup.template / BAKED / NEW_FILE).write_text(NEW_FILE_TEXT)
    new_commit = commit_all(setup.template, "A new standard")

    stale = cruft(setup.service, "check")
    assert stale.returncode != 0, "cruft check should see that the template moved on"
    assert "out of date" in stale.stdout

    updated = cruft(setup.service, "update", "--skip-apply-ask", "--allow-untracked-files")
    assert updated.returncode == 0, updated.stdout + updated.stderr

    assert (setup.service / metrics).read_text().endswith(NEW_STANDARD)
    assert (setup.service / NEW_FILE).read_text() == NEW_FILE_TEXT.replace(
        "{{ cookiecutter.service_name }}", SERVICE
    )
    assert (setup.service / items).read_text().endswith(OWN_CODE)
    assert (setup.service / f"src/{PACKAGE}/example/own.py").exists()
    assert json.loads((setup.service / ".cruft.json").read_text())["commit"] == new_commit
    assert not list(setup.service.rglob("*.rej"))
    assert cruft(setup.service, "check").returncode == 0
    # The update is left for review, uncommitted, like any other change.
    assert metrics in git(setup.service, "status", "--porcelain")


def test_a_conflicting_change_is_left_as_conflict_markers(setup: Setup) -> None:
    readme = "README.md"
    with (setup.service / readme).open("a") as file:
        file.write("\nThe service's own closing line.\n")
    commit_all(setup.service, "Own README line")
    with setup.template_file(readme).open("a") as file:
        file.write("\nThe template's new closing line.\n")
    commit_all(setup.template, "New README line")

    updated = cruft(setup.service, "update", "--skip-apply-ask", "--allow-untracked-files")
    assert updated.returncode == 0, updated.stdout + updated.stderr

    text = (setup.service / readme).read_text()
    assert "<<<<<<<" in text
    assert "The service's own closing line." in text
    assert "The template's new closing line." in text
    # git knows the file is unmerged until the owner resolves it and adds it.
    assert git(setup.service, "diff", "--name-only", "--diff-filter=U") == readme
