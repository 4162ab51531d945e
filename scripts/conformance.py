"""Check a running service against the platform's contract, from outside.

    python scripts/conformance.py http://127.0.0.1:8000

Works on any service, baked from this template or not, and needs only httpx. The rules live in
one file, the checker every baked service carries and runs in its own tests
(``{{cookiecutter.service_name}}/tests/support/conformance.py``); this runs that same file.
"""

from __future__ import annotations

import runpy
from pathlib import Path

CHECKER = (
    Path(__file__).resolve().parents[1]
    / "{{cookiecutter.service_name}}"
    / "tests"
    / "support"
    / "conformance.py"
)

if __name__ == "__main__":
    runpy.run_path(str(CHECKER), run_name="__main__")
