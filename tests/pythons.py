"""Where the Python versions a bake may ask for are on this machine."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path


def python_executable(version: str) -> str:
    """An interpreter of ``version`` (``3.12``): uv's own lookup first, then pyenv's folders.
    None found is a failure: the bake matrix never skips a version."""
    found = subprocess.run(
        ["uv", "python", "find", "--no-project", version],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for candidate in sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}")):
        return candidate
    on_path = shutil.which(f"python{version}")
    if on_path:
        return on_path
    raise AssertionError(f"no Python {version} on this machine (uv python find, pyenv, PATH)")
