"""Regenerate the lock files a baked service starts with, one per messaging option.

Run after changing a pin in {{cookiecutter.service_name}}/pyproject.toml:

    .venv/bin/python scripts/lock.py

Each lock is resolved by uv from the rendered pyproject.toml, with the chassis taken from this
checkout, then the project's own name and version are turned back into template variables.
The bake keeps the one for its broker as the seed of its uv.lock (hooks/post_gen_project.py):
`uv lock` there points the chassis at the bake's own source and keeps every other version, so
a service installs what the template's tests ran with. tests/test_bake.py checks each bake's
lock is current.
"""

from __future__ import annotations

import re
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
    rendered = jinja2.Template(source, keep_trailing_newline=True).render(cookiecutter=context)
    local = f'service-chassis = {{ path = "{(ROOT / "chassis").as_posix()}" }}'
    return re.sub(r"^service-chassis = \{.*\}$", local, rendered, flags=re.MULTILINE)


CHASSIS = f'"{(ROOT / "chassis").as_posix()}"'
# The seed names the chassis by a neutral path: the hook's `uv lock` sets the real source.
NEUTRAL_CHASSIS = '"../chassis"'
OWN_ENTRY = f'name = "{PLACEHOLDER}"\nversion = "{VERSION}"\n'
TEMPLATED_ENTRY = (
    'name = "{{ cookiecutter.service_name }}"\nversion = "{{ cookiecutter.version }}"\n'
)


def lock(messaging: str, *, check: bool = False) -> str:
    """The seed lock for ``messaging``, resolved with the current seed as preferences (so only
    what the pyproject.toml changed moves); with ``check``, fail if it would change at all."""
    seed = SERVICE / f"uv-{messaging}.lock"
    with tempfile.TemporaryDirectory() as workdir:
        project = Path(workdir)
        (project / "pyproject.toml").write_text(render_pyproject(messaging))
        (project / "README.md").write_text("placeholder\n")
        if seed.exists():
            text = seed.read_text().replace(TEMPLATED_ENTRY, OWN_ENTRY)
            (project / "uv.lock").write_text(text.replace(NEUTRAL_CHASSIS, CHASSIS))
        command = ["uv", "lock", "--quiet", *(["--check"] if check else [])]
        if subprocess.run(command, cwd=project, check=False).returncode != 0:
            raise SystemExit(f"uv-{messaging}.lock is not current: run scripts/lock.py")
        text = (project / "uv.lock").read_text()
    if text.count(OWN_ENTRY) != 1:
        raise SystemExit(f"expected the project's own entry once in the {messaging} lock")
    return text.replace(CHASSIS, NEUTRAL_CHASSIS).replace(OWN_ENTRY, TEMPLATED_ENTRY)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    for messaging in MESSAGING:
        target = SERVICE / f"uv-{messaging}.lock"
        text = lock(messaging, check=check)
        if check:
            print(f"{target.relative_to(ROOT)} is current")
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
