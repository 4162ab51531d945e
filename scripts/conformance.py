"""Check a running service against the platform's contract, from outside.

    python scripts/conformance.py http://127.0.0.1:8000 [--min-chassis-version 0.1.0]

Works on any service, baked from this template or not, and needs only httpx. The rules live in
one file, the chassis's checker (``chassis/src/service_chassis/conformance.py``), which every
baked service also runs in its tests as ``python -m service_chassis.conformance``; this runs
that same file, so the chassis need not be installed.
"""

from __future__ import annotations

import runpy
from pathlib import Path

CHECKER = (
    Path(__file__).resolve().parents[1] / "chassis" / "src" / "service_chassis" / "conformance.py"
)

if __name__ == "__main__":
    runpy.run_path(str(CHECKER), run_name="__main__")
