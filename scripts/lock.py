"""Regenerate the lock files a baked service starts with, one per messaging option.

Run after changing a pin in {{cookiecutter.service_name}}/pyproject.toml:

    .venv/bin/python scripts/lock.py

Each lock is resolved by uv from the rendered pyproject.toml, then the project's own name and
version are turned back into template variables. The bake keeps the one for its broker as
uv.lock (hooks/post_gen_project.py), so `uv sync --locked` and the Dockerfile install exactly
what the template's tests ran with. tests/test_bake.py checks each bake's lock is current.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "{{cookiecutter.service_name}}"
PLACEHOLDER = "lock-placeholder"
VERSION = "0.0.0"
MESSAGING = ("nats", "rabbitmq", "kafka", "none")


def render_pyproject(messaging: str) -> str:
    context = {
        "service_name": PLACEHOLDER,
        "__package_name": PLACEHOLDER.replace("-", "_"),
        "description": "placeholder",
        "version": VERSION,
        "python_version": "3.11",
        "messaging": messaging,
    }
    source = (SERVICE / "pyproject.toml").read_text()
    return jinja2.Template(source, keep_trailing_newline=True).render(cookiecutter=context)


def lock(messaging: str) -> str:
    with tempfile.TemporaryDirectory() as workdir:
        project = Path(workdir)
        (project / "pyproject.toml").write_text(render_pyproject(messaging))
        (project / "README.md").write_text("placeholder\n")
        subprocess.run(["uv", "lock", "--quiet"], cwd=project, check=True)
        text = (project / "uv.lock").read_text()
    project_entry = f'name = "{PLACEHOLDER}"\nversion = "{VERSION}"\n'
    if text.count(project_entry) != 1:
        raise SystemExit(f"expected the project's own entry once in the {messaging} lock")
    return text.replace(
        project_entry,
        'name = "{{ cookiecutter.service_name }}"\nversion = "{{ cookiecutter.version }}"\n',
    )


def main() -> int:
    for messaging in MESSAGING:
        target = SERVICE / f"uv-{messaging}.lock"
        target.write_text(lock(messaging))
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
