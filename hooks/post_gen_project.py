"""Prune what the chosen options do not need, then print the next steps.

Every option-specific path is listed once in ``OPTION_PATHS``. A listed path that is missing
from the bake is an error: the list and the template must not drift apart silently.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

PACKAGE = "src/{package}"

# option -> value -> paths that exist only for that value. "*" means "any value but none".
OPTION_PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    "messaging": {},
    "discovery": {},
}


class MissingPathError(RuntimeError):
    pass


def paths_to_remove(answers: Mapping[str, object], package: str) -> list[str]:
    """The option-specific paths that the chosen answers do not use."""
    remove: list[str] = []
    for option, by_value in OPTION_PATHS.items():
        chosen = answers[option]
        for value, paths in by_value.items():
            keep = chosen != "none" if value == "*" else chosen == value
            if not keep:
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
        lines.append(f"  (the service expects a {broker} broker: see README.md, 'Running locally')")
    lines.append("  git init && git add -A && git commit -m 'Bake from the service template'")
    return "\n".join(lines)


def main(answers_json: str, root: Path) -> int:
    answers = json.loads(answers_json)
    try:
        prune(root, paths_to_remove(answers, str(answers["__package_name"])))
    except MissingPathError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(ANSWERS_JSON, Path.cwd()))
