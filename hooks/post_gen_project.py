"""Prune what the chosen options do not need, record where the bake came from, print next steps.

Every option-specific path is listed once in ``OPTION_PATHS``. A listed path that is missing
from the bake is an error: the list and the template must not drift apart silently.

A bake from a git checkout of the template records its origin in ``.cruft.json`` (template,
commit, answers), as ``cruft create`` would, so ``cruft check`` and ``cruft update`` work on a
service baked with plain cookiecutter.

The service depends on the chassis (``service-chassis``) from the same template repository:
from its git URL at the chassis's release tag when the bake came from a URL, from the local
checkout's ``chassis/`` folder when it came from a local path (tests, ``make demo``). The lock
of the chosen broker and database seeds ``uv.lock``, which ``uv lock`` then brings in line with
that source.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

PACKAGE = "src/{package}"

# option -> value -> paths that exist only for that value. "*" means "any value but none".
OPTION_PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    "messaging": {
        "*": (f"{PACKAGE}/example/events.py", "tests/example/test_events.py"),
    },
    "database": {
        "postgres": (
            f"{PACKAGE}/models.py",
            f"{PACKAGE}/migrations",
            f"{PACKAGE}/example/stored_items.py",
            "tests/example/test_stored_items.py",
            "tests/test_migrations.py",
            "deploy/k8s/base/migrate-init-container.yaml",
            "tests/deploy/test_migrate_init_container.py",
        ),
        "none": (f"{PACKAGE}/example/items.py", "tests/example/test_items.py"),
    },
    "saga": {
        "*": (
            f"{PACKAGE}/saga_models.py",
            f"{PACKAGE}/example/orders.py",
            f"{PACKAGE}/example/participants.py",
            f"{PACKAGE}/migrations/versions/r0002_example_saga.py",
            "tests/example/test_orders.py",
        ),
    },
}


# Paths that need several options at once: kept only when none of them is "none".
JOINT_PATHS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("messaging", "database"): ("tests/example/test_item_events.py",),
}


class MissingPathError(RuntimeError):
    pass


def lock_name(answers: Mapping[str, object]) -> str:
    """The seed lock of the chosen broker and database (scripts/lock.py makes one for each)."""
    database = answers.get("database", "none")
    return f"uv-{answers['messaging']}" + ("" if database == "none" else f"-{database}") + ".lock"


def adopt_lock(root: Path, answers: Mapping[str, object]) -> None:
    """Keep the chosen seed lock as uv.lock and remove the others."""
    chosen = root / lock_name(answers)
    locks = sorted(root.glob("uv-*.lock"))
    if chosen not in locks:
        raise MissingPathError(
            f"expected {chosen.name} among the seed locks, found {[p.name for p in locks]}"
        )
    for other in locks:
        if other != chosen:
            other.unlink()
    chosen.rename(root / "uv.lock")


CHASSIS_SOURCE = re.compile(r"^service-chassis = \{.*\}$", re.MULTILINE)
CHASSIS_PIN = re.compile(r'"service-chassis(?:\[[^\]]*\])?==([^"]+)"')


def from_invocation(path: object) -> Path:
    """A path cookiecutter was given, made absolute. A relative one is relative to where
    cookiecutter ran, which the shell's PWD still names: hooks run inside the new project."""
    given = Path(str(path or ".")).expanduser()
    if given.is_absolute():
        return given
    return Path(os.environ.get("PWD") or Path.cwd()) / given


def chassis_source(answers: Mapping[str, object], pyproject: str) -> str:
    """The ``[tool.uv.sources]`` entry for the chassis: where this bake came from."""
    repo_dir = from_invocation(answers.get("_repo_dir"))
    template = str(answers.get("_template") or "")
    local = not template or from_invocation(template).is_dir()
    if local:
        # Editable: a change to the local chassis is what the bake runs, without a rebuild.
        path = (repo_dir / "chassis").resolve().as_posix()
        return _inline_table(path=path, editable=True)
    pin = CHASSIS_PIN.search(pyproject)
    if pin is None:
        raise MissingPathError("pyproject.toml does not pin service-chassis==<version>")
    url = _git(repo_dir, "remote", "get-url", "origin") or template
    return _inline_table(git=url, subdirectory="chassis", tag=f"chassis-v{pin.group(1)}")


def _inline_table(**keys: str | bool) -> str:
    # No doubled braces: this file is itself rendered by Jinja before it runs.
    body = ", ".join(f"{key} = {json.dumps(value)}" for key, value in keys.items())
    return "service-chassis = { " + body + " }"


def point_at_chassis(root: Path, answers: Mapping[str, object]) -> None:
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    if len(CHASSIS_SOURCE.findall(text)) != 1:
        raise MissingPathError("pyproject.toml has no single 'service-chassis = {...}' source")
    pyproject.write_text(CHASSIS_SOURCE.sub(chassis_source(answers, text), text))


def lock(root: Path) -> str:
    """Bring uv.lock in line with the chassis source; a note when that could not be done."""
    uv = shutil.which("uv")
    if uv is None:
        return "uv was not found: run `uv lock` in the service before `uv sync --locked`."
    result = subprocess.run(
        [uv, "lock", "--quiet"], cwd=root, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return f"WARNING: `uv lock` failed; run it in the service:\n{result.stderr.strip()}"
    return ""


def paths_to_remove(answers: Mapping[str, object], package: str) -> list[str]:
    """The option-specific paths that the chosen answers do not use."""
    remove: list[str] = []
    for option, by_value in OPTION_PATHS.items():
        chosen = answers.get(option, "none")
        for value, paths in by_value.items():
            keep = chosen != "none" if value == "*" else chosen == value
            if not keep:
                remove += [path.format(package=package) for path in paths]
    for options, paths in JOINT_PATHS.items():
        if any(answers.get(option, "none") == "none" for option in options):
            remove += [path.format(package=package) for path in paths]
    return remove


def prune(root: Path, relative_paths: list[str]) -> None:
    # Check every path first so a bad list fails before anything is deleted.
    missing = [path for path in relative_paths if not (root / path).exists()]
    if missing:
        raise MissingPathError(
            "the template lists option-specific paths that it does not contain: "
            + ", ".join(sorted(missing))
        )
    # Deepest first, so a file inside a removed folder is not looked for after the folder.
    for path in sorted(relative_paths, key=lambda p: p.count("/"), reverse=True):
        target = root / path
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


# Caches a local run of the tools may have left inside the template folder: never baked.
TOOL_CACHES = ("__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache", ".hypothesis")


def remove_tool_caches(root: Path) -> None:
    for name in TOOL_CACHES:
        for cache in sorted(root.rglob(name), reverse=True):
            if cache.is_dir():
                shutil.rmtree(cache, ignore_errors=True)


def next_steps(answers: Mapping[str, object]) -> str:
    name = answers["service_name"]
    broker = answers["messaging"]
    lines = [
        f"Baked {name}. Next:",
        f"  cd {name}",
        "  uv sync                      # create .venv from the locked dependencies",
        "  uv run pytest                # the service's own tests",
        f"  uv run python -m {answers['__package_name']}"
        f"   # start it on port {answers['http_port']}",
    ]
    if broker != "none":
        lines.append(f"  (the service expects a {broker} broker: see README.md, 'Messaging')")
    if answers.get("database", "none") != "none":
        lines.append(
            f"  uv run python -m {answers['__package_name']} migrate"
            "   # create its tables (DATABASE_URL: see README.md, 'Database')"
        )
    lines.append("  git init && git add -A && git commit -m 'Bake from the service template'")
    return "\n".join(lines)


CRUFT_FILE = ".cruft.json"
# What cookiecutter adds to the answers about this one run; cruft records none of it.
RUN_KEYS = frozenset({"_checkout", "_output_dir", "_repo_dir", "_template"})


def _git(directory: str | Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def cruft_state(answers: Mapping[str, object]) -> tuple[dict[str, object] | None, str]:
    """What ``cruft create`` would record for this bake, and a note for the person baking.

    None when cruft runs the bake itself (it records the state on its own) or when the template
    is not a git checkout (nothing to record a commit of).
    """
    if "_commit" in answers:  # cruft create or cruft update: cruft writes .cruft.json
        return None, ""
    repo_dir = str(from_invocation(answers["_repo_dir"])) if answers.get("_repo_dir") else ""
    top = _git(repo_dir, "rev-parse", "--show-toplevel") if repo_dir else None
    commit = _git(repo_dir, "rev-parse", "HEAD") if top else None
    if top is None or commit is None:
        return None, (
            f"Not recorded in {CRUFT_FILE}: the template is not a git checkout. To take template "
            "updates later, run `cruft link <template-git-url>` in the service."
        )
    template = str(answers.get("_template") or "")
    origin = _git(repo_dir, "remote", "get-url", "origin")
    local = bool(template) and from_invocation(template).is_dir()
    # A local checkout is recorded by its path, as cruft does; a clone cookiecutter made of a
    # remote template (gh:org/repo, https://...) by the URL it cloned.
    location = str(Path(top).resolve()) if local or origin is None else origin
    inner = Path(repo_dir).resolve().relative_to(Path(top).resolve()).as_posix()
    context = {key: value for key, value in answers.items() if key not in RUN_KEYS}
    context |= {"_template": location, "_commit": commit}
    state: dict[str, object] = {
        "template": location,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": _in_template_order(context, Path(repo_dir))},
        "directory": None if inner == "." else inner,
    }
    notes = [f"Recorded the template ({location} at {commit[:12]}) in {CRUFT_FILE}."]
    if _git(repo_dir, "status", "--porcelain", "--untracked-files=no"):
        notes.append(
            "WARNING: the template checkout has uncommitted changes, which that commit lacks."
        )
    if local or origin is None:
        notes.append(
            f'The template is a local path: for `cruft check` in CI, set "template" in '
            f"{CRUFT_FILE} to the template repository's URL."
        )
    return state, "\n".join(notes)


def _in_template_order(context: Mapping[str, object], repo_dir: Path) -> dict[str, object]:
    # The answers arrive sorted by name; cruft keeps cookiecutter.json's order, which reads better.
    try:
        order = list(json.loads((repo_dir / "cookiecutter.json").read_text()))
    except (OSError, ValueError):
        order = []
    rank = {key: index for index, key in enumerate([*order, "_template", "_commit"])}
    return dict(sorted(context.items(), key=lambda item: rank.get(item[0], len(rank))))


def record_origin(answers: Mapping[str, object], root: Path) -> str:
    """Write ``.cruft.json`` when there is something to record; return the note to print."""
    state, note = cruft_state(answers)
    if state is not None:
        text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": "))
        (root / CRUFT_FILE).write_text(text + "\n")
    return note


def main(answers_json: str, root: Path) -> int:
    answers = json.loads(answers_json)
    try:
        prune(root, paths_to_remove(answers, str(answers["__package_name"])))
        adopt_lock(root, answers)
        point_at_chassis(root, answers)
    except MissingPathError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    remove_tool_caches(root)
    for note in (lock(root), record_origin(answers, root)):
        if note:
            print(note)
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(ANSWERS_JSON, Path.cwd()))
