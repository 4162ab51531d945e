"""post_gen_project records a bake's origin in .cruft.json, as ``cruft create`` would.

Real git repositories in temporary folders stand in for the template checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TEMPLATE_JSON = {"service_name": "orders", "messaging": ["nats", "none"], "version": "0.1.0"}


def git(directory: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    result = subprocess.run(
        ["git", *args], cwd=directory, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def template_checkout(root: Path) -> str:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cookiecutter.json").write_text(json.dumps(TEMPLATE_JSON))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "template")
    return git(root, "rev-parse", "HEAD")


def answers(repo_dir: Path, template: str | None = None, **more: Any) -> dict[str, Any]:
    # As cookiecutter hands them to the hook: sorted by name, with its run's own keys.
    given = {
        "__package_name": "orders",
        "_checkout": None,
        "_output_dir": "/somewhere/else",
        "_repo_dir": str(repo_dir),
        "_template": template if template is not None else str(repo_dir),
        "messaging": "none",
        "service_name": "orders",
        "version": "0.1.0",
        **more,
    }
    return dict(sorted(given.items()))


def test_a_bake_from_a_local_checkout_records_path_commit_and_answers(
    post_gen: ModuleType, tmp_path: Path
) -> None:
    commit = template_checkout(tmp_path / "template")
    state, note = post_gen.cruft_state(answers(tmp_path / "template"))
    location = str((tmp_path / "template").resolve())
    assert state == {
        "template": location,
        "commit": commit,
        "checkout": None,
        "context": {
            "cookiecutter": {
                "service_name": "orders",
                "messaging": "none",
                "version": "0.1.0",
                "__package_name": "orders",
                "_template": location,
                "_commit": commit,
            }
        },
        "directory": None,
    }
    # Keys in cookiecutter.json's order, as cruft writes them.
    assert list(state["context"]["cookiecutter"])[:3] == ["service_name", "messaging", "version"]
    assert f"Recorded the template ({location} at {commit[:12]})" in note
    assert "local path" in note
    assert "WARNING" not in note


def test_the_file_is_written_as_cruft_writes_it(post_gen: ModuleType, tmp_path: Path) -> None:
    template_checkout(tmp_path / "template")
    service = tmp_path / "service"
    service.mkdir()
    post_gen.record_origin(answers(tmp_path / "template"), service)
    text = (service / ".cruft.json").read_text()
    state = json.loads(text)
    assert text == json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"


def test_cruft_running_the_bake_records_nothing(post_gen: ModuleType, tmp_path: Path) -> None:
    # cruft create and cruft update's regenerations put _commit in the answers and write the
    # state themselves; a .cruft.json from the hook would show up in update diffs.
    template_checkout(tmp_path / "template")
    given = answers(tmp_path / "template", _commit="0" * 40)
    assert post_gen.cruft_state(given) == (None, "")
    post_gen.record_origin(given, tmp_path)
    assert not (tmp_path / ".cruft.json").exists()


def test_a_template_outside_git_says_how_to_link_later(
    post_gen: ModuleType, tmp_path: Path
) -> None:
    plain = tmp_path / "unpacked"
    plain.mkdir()
    (plain / "cookiecutter.json").write_text("{}")
    state, note = post_gen.cruft_state(answers(plain))
    assert state is None
    assert "cruft link" in note
    assert post_gen.record_origin(answers(plain), tmp_path) == note
    assert not (tmp_path / ".cruft.json").exists()


def test_a_remote_template_is_recorded_by_the_url_it_was_cloned_from(
    post_gen: ModuleType, tmp_path: Path
) -> None:
    # cookiecutter gh:org/template clones into ~/.cookiecutters/template and bakes from there.
    clone = tmp_path / "cookiecutters" / "template"
    commit = template_checkout(clone)
    url = "https://github.com/org/template.git"
    git(clone, "remote", "add", "origin", url)
    state, note = post_gen.cruft_state(answers(clone, template="gh:org/template"))
    assert state["template"] == url
    assert state["context"]["cookiecutter"]["_template"] == url
    assert state["commit"] == commit
    assert "local path" not in note


def test_a_template_in_a_subfolder_records_the_folder(post_gen: ModuleType, tmp_path: Path) -> None:
    template_checkout(tmp_path / "repo" / "templates" / "service")
    # The repository is the outer folder; the template two folders down.
    (tmp_path / "repo" / "templates" / "service" / ".git").rename(tmp_path / "repo" / ".git")
    git(tmp_path / "repo", "add", "-A")
    git(tmp_path / "repo", "commit", "-q", "-m", "moved")
    state, _ = post_gen.cruft_state(answers(tmp_path / "repo" / "templates" / "service"))
    assert state["template"] == str((tmp_path / "repo").resolve())
    assert state["directory"] == "templates/service"


def test_uncommitted_template_changes_are_pointed_out(post_gen: ModuleType, tmp_path: Path) -> None:
    template_checkout(tmp_path / "template")
    (tmp_path / "template" / "cookiecutter.json").write_text(json.dumps({**TEMPLATE_JSON, "x": 1}))
    state, note = post_gen.cruft_state(answers(tmp_path / "template"))
    assert state is not None
    assert "WARNING: the template checkout has uncommitted changes" in note


@pytest.mark.parametrize("key", ["_output_dir", "_repo_dir", "_checkout"])
def test_nothing_about_the_run_itself_is_recorded(
    post_gen: ModuleType, tmp_path: Path, key: str
) -> None:
    template_checkout(tmp_path / "template")
    state, _ = post_gen.cruft_state(answers(tmp_path / "template"))
    assert key not in state["context"]["cookiecutter"]
