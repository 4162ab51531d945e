from __future__ import annotations

from pathlib import Path

import pytest

from tests.stack.programs import require_stack_binaries


@pytest.fixture(scope="session")
def stack_binaries() -> dict[str, Path]:
    """Jaeger and the gateway as scripts/install-stack.sh built them."""
    return require_stack_binaries("jaeger", "gateway")
