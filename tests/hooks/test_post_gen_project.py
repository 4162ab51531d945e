from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ANSWERS: dict[str, Any] = {
    "service_name": "orders",
    "__package_name": "orders",
    "http_port": 8000,
    "messaging": "nats",
    "discovery": "kubernetes",
    "database": "none",
}
LOCKS = [
    f"uv-{messaging}{suffix}.lock"
    for messaging in ("nats", "rabbitmq", "kafka", "none")
    for suffix in ("", "-postgres")
]


def every_listed_path(post_gen: ModuleType) -> list[str]:
    joint = {path for paths in post_gen.JOINT_PATHS.values() for path in paths}
    return sorted(
        {
            path.format(package="orders")
            for by_value in post_gen.OPTION_PATHS.values()
            for paths in by_value.values()
            for path in paths
        }
        | joint
    )


def make_tree(root: Path, paths: list[str]) -> None:
    for path in paths:
        target = root / path
        if target.suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("")
        else:
            target.mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("messaging", ["nats", "rabbitmq", "kafka", "none"])
@pytest.mark.parametrize("discovery", ["kubernetes", "consul", "none"])
@pytest.mark.parametrize("database", ["none", "postgres"])
def test_only_the_chosen_options_survive(
    post_gen: ModuleType, tmp_path: Path, messaging: str, discovery: str, database: str
) -> None:
    listed = every_listed_path(post_gen)
    make_tree(tmp_path, [*listed, "src/orders/app.py"])
    answers = {**ANSWERS, "messaging": messaging, "discovery": discovery, "database": database}
    removed = post_gen.paths_to_remove(answers, "orders")
    post_gen.prune(tmp_path, removed)
    for path in removed:
        assert not (tmp_path / path).exists()
    assert (tmp_path / "src/orders/app.py").exists()
    kept = [path for path in listed if (tmp_path / path).exists()]
    for options, paths in post_gen.JOINT_PATHS.items():
        wanted = all(answers[option] != "none" for option in options)
        assert all((path in kept) == wanted for path in paths)
    chosen_options = (("messaging", messaging), ("discovery", discovery), ("database", database))
    for option, chosen in chosen_options:
        for value, paths in post_gen.OPTION_PATHS.get(option, {}).items():
            chosen_here = chosen != "none" if value == "*" else chosen == value
            for path in paths:
                assert ((path.format(package="orders")) in kept) == chosen_here


def test_a_listed_path_that_is_missing_fails_before_deleting(
    post_gen: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "present.txt").write_text("")
    with pytest.raises(post_gen.MissingPathError, match=r"missing\.txt"):
        post_gen.prune(tmp_path, ["present.txt", "missing.txt"])
    assert (tmp_path / "present.txt").exists()


def test_main_fails_with_a_clear_message_on_a_missing_path(
    post_gen: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(post_gen, "OPTION_PATHS", {"discovery": {"consul": ("gone.py",)}})
    monkeypatch.setattr(post_gen, "JOINT_PATHS", {})
    import json

    assert post_gen.main(json.dumps(ANSWERS), tmp_path) == 1
    assert "does not contain: gone.py" in capsys.readouterr().err


def test_next_steps_name_the_commands(post_gen: ModuleType) -> None:
    text = post_gen.next_steps(ANSWERS)
    assert "cd orders" in text
    assert "uv run pytest" in text
    assert "python -m orders" in text
    assert "nats" in text


def test_tool_caches_are_not_baked(post_gen: ModuleType, tmp_path: Path) -> None:
    for cache in ("src/pkg/__pycache__", ".ruff_cache", "tests/.mypy_cache", ".hypothesis"):
        (tmp_path / cache).mkdir(parents=True)
        (tmp_path / cache / "junk").write_text("")
    (tmp_path / "src/pkg/app.py").write_text("")
    post_gen.remove_tool_caches(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "src",
        "src/pkg",
        "src/pkg/app.py",
        "tests",
    ]


@pytest.mark.parametrize("messaging", ["nats", "none"])
@pytest.mark.parametrize("database", ["none", "postgres"])
def test_the_chosen_lock_becomes_uv_lock(
    post_gen: ModuleType, tmp_path: Path, messaging: str, database: str
) -> None:
    make_tree(tmp_path, LOCKS)
    (tmp_path / post_gen.lock_name({"messaging": messaging, "database": database})).write_text(
        "chosen"
    )
    post_gen.adopt_lock(tmp_path, {"messaging": messaging, "database": database})
    assert sorted(p.name for p in tmp_path.glob("*.lock")) == ["uv.lock"]
    assert (tmp_path / "uv.lock").read_text() == "chosen"


def test_a_missing_chosen_lock_is_an_error(post_gen: ModuleType, tmp_path: Path) -> None:
    make_tree(tmp_path, ["uv-nats.lock"])
    with pytest.raises(post_gen.MissingPathError, match=r"uv-nats-postgres\.lock"):
        post_gen.adopt_lock(tmp_path, {"messaging": "nats", "database": "postgres"})


PYPROJECT = """[project]
dependencies = ["service-chassis[nats]==1.2.3"]

[tool.uv.sources]
service-chassis = { git = "https://example.invalid/t", subdirectory = "chassis", tag = "v1" }
"""


def test_a_bake_from_a_local_checkout_uses_its_chassis_folder(
    post_gen: ModuleType, tmp_path: Path
) -> None:
    template = tmp_path / "template"
    (template / "chassis").mkdir(parents=True)
    answers = {**ANSWERS, "_template": str(template), "_repo_dir": str(template)}
    source = post_gen.chassis_source(answers, PYPROJECT)
    assert source == (
        f'service-chassis = {{ path = "{(template / "chassis").as_posix()}", editable = true }}'
    )


def test_a_relative_template_path_is_taken_from_where_cookiecutter_ran(
    post_gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "template" / "chassis").mkdir(parents=True)
    monkeypatch.setenv("PWD", str(tmp_path))
    answers = {**ANSWERS, "_template": "template", "_repo_dir": "template"}
    assert str(tmp_path / "template" / "chassis") in post_gen.chassis_source(answers, PYPROJECT)


def test_a_bake_from_a_url_fetches_the_chassis_at_its_release_tag(
    post_gen: ModuleType, tmp_path: Path
) -> None:
    answers = {
        **ANSWERS,
        "_template": "https://example.org/org/tmpl.git",
        "_repo_dir": str(tmp_path),
    }
    source = post_gen.chassis_source(answers, PYPROJECT)
    assert source == (
        'service-chassis = { git = "https://example.org/org/tmpl.git", '
        'subdirectory = "chassis", tag = "chassis-v1.2.3" }'
    )


def test_the_source_line_is_replaced_once(post_gen: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "chassis").mkdir()
    answers = {**ANSWERS, "_template": str(tmp_path), "_repo_dir": str(tmp_path)}
    post_gen.point_at_chassis(tmp_path, answers)
    text = (tmp_path / "pyproject.toml").read_text()
    assert "example.invalid" not in text
    assert text.count("service-chassis = {") == 1


@pytest.mark.parametrize("saga", ["none", "place-order"])
def test_the_example_saga_is_baked_only_when_chosen(
    post_gen: ModuleType, tmp_path: Path, saga: str
) -> None:
    listed = every_listed_path(post_gen)
    make_tree(tmp_path, listed)
    answers = {**ANSWERS, "database": "postgres", "saga": saga}
    post_gen.prune(tmp_path, post_gen.paths_to_remove(answers, "orders"))
    saga_paths = [path.format(package="orders") for path in post_gen.OPTION_PATHS["saga"]["*"]]
    assert saga_paths
    for path in saga_paths:
        assert (tmp_path / path).exists() == (saga != "none"), path
    assert (tmp_path / "src/orders/migrations").exists()  # the database's own stay either way
