"""The platform's conformance check, run against this service as a real process.

``tests/support/conformance.py`` is the same checker the template repository offers as a
command for any service (``python tests/support/conformance.py http://host:port``). Messaging is
off here, so no broker is needed; CI runs the check again against the built image with its
broker.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PACKAGE
from .support import conformance
from .support.servers import ServiceProcess, free_port, start_service

CHECKER = Path(conformance.__file__)


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    running = start_service(
        PACKAGE,
        {
            "OTEL_TRACES_EXPORTER": "none",
            "MESSAGING_ENABLED": "false",
            # Consul bakes: an agent address where nothing listens, so nothing is registered.
            "CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        },
    )
    yield running
    running.stop()


def test_every_rule_passes(service: ServiceProcess) -> None:
    results = conformance.run_checks(service.base_url)
    assert [r.rule for r in results] == [name for name, _ in conformance.RULES]
    assert all(r.status == "PASS" for r in results), conformance.report(results)


def test_the_command_prints_a_line_per_rule_and_exits_zero(service: ServiceProcess) -> None:
    result = subprocess.run(
        [sys.executable, str(CHECKER), service.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(conformance.RULES) + 1
    assert all(line.startswith("PASS") for line in lines[:-1])
    assert lines[-1] == f"conformance: {len(conformance.RULES)} passed, 0 failed"


def test_the_command_fails_when_nothing_answers() -> None:
    result = subprocess.run(
        [sys.executable, str(CHECKER), f"http://127.0.0.1:{free_port()}", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "FAIL  liveness" in result.stdout
    assert "ConnectError" in result.stdout
