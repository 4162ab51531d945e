"""The platform's conformance check, run against this service as a real process.

The checker comes with the chassis (``python -m service_chassis.conformance http://host:port``)
and needs only httpx, so the platform team runs the same one against any service. Messaging is
off here, so no broker is needed; CI runs the check again against the built image.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from service_chassis import conformance
from service_chassis.testing.servers import ServiceProcess, free_port, start_service

from .conftest import PACKAGE

CHECKER = ("-m", "service_chassis.conformance")


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
    # A rule that needs a route of a kind this service lacks (a JSON body) is skipped, not failed.
    assert all(r.status in ("PASS", "SKIP") for r in results), conformance.report(results)
    assert sum(r.status == "PASS" for r in results) >= len(conformance.RULES) - 2


def test_the_command_prints_a_line_per_rule_and_exits_zero(service: ServiceProcess) -> None:
    result = subprocess.run(
        [sys.executable, *CHECKER, service.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(conformance.RULES) + 1
    assert not any(line.startswith("FAIL") for line in lines[:-1])
    assert ", 0 failed" in lines[-1]


def test_the_command_fails_when_nothing_answers() -> None:
    result = subprocess.run(
        [sys.executable, *CHECKER, f"http://127.0.0.1:{free_port()}", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "FAIL  liveness" in result.stdout
    assert "ConnectError" in result.stdout
