"""The platform's conformance check, run against this service as a real process.

The checker comes with the chassis (``python -m service_chassis.conformance http://host:port``)
and needs only httpx, so the platform team runs the same one against any service. Messaging is
off here, so no broker is needed; CI runs the check again against the built image.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

import service_chassis
from service_chassis import Service, conformance
from service_chassis.problems import PROBLEM_JSON, problem_response
from service_chassis.testing.servers import ServiceProcess, free_port, start_service
from tests.sample.settings import Settings

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


def test_a_minimum_chassis_version_is_enforced(service: ServiceProcess) -> None:
    current = service_chassis.__version__
    [passed] = conformance.run_checks(service.base_url, min_chassis_version=current)[-1:]
    assert (passed.rule, passed.status) == ("chassis-version", "PASS")
    newer = f"{int(current.split('.')[0]) + 1}.0.0"
    [failed] = conformance.run_checks(service.base_url, min_chassis_version=newer)[-1:]
    assert failed.status == "FAIL"
    assert f"older than the required {newer}" in failed.why


def _two_routers_on_one_path() -> FastAPI:
    """GET and POST on one path, from two routers: FastAPI's own 405 names only one of them."""
    reads, writes = APIRouter(), APIRouter()

    @reads.get("/things")
    async def read() -> dict[str, str]:
        return {}

    @writes.post("/things")
    async def write() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(reads)
    app.include_router(writes)
    return app


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` under uvicorn on loopback, in a thread, and a client for it."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}") as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_allow_header_must_list_every_method_of_the_path() -> None:
    app = _two_routers_on_one_path()

    @app.exception_handler(StarletteHTTPException)
    async def problem(request: Request, exc: StarletteHTTPException) -> Response:
        # Problem details in every other respect, but with the router's own Allow header,
        # which names one route's methods.
        response = problem_response(
            request=request, status=exc.status_code, detail=str(exc.detail), headers=exc.headers
        )
        document = json.loads(bytes(response.body)) | {
            "trace_id": "0af7651916cd43dd8448eb211c80319c"
        }
        return Response(json.dumps(document), exc.status_code, exc.headers, PROBLEM_JSON)

    with (
        served(app) as client,
        pytest.raises(conformance.RuleFailed, match="leaves out POST"),
    ):
        conformance.wrong_method(conformance.Probe(client))


def test_the_chassis_lists_every_method_of_the_path() -> None:
    service = Service(Settings(otel_traces_exporter="none"))
    service.app.include_router(_two_routers_on_one_path().router)
    with served(service.app) as client:
        line = conformance.wrong_method(conformance.Probe(client))
    assert line.endswith("Allow: GET, POST")
