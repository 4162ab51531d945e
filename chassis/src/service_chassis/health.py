"""Liveness and readiness in ``application/health+json``.

Liveness answers from the process alone: a dependency that is down must not get the service
restarted. Readiness runs every registered dependency check concurrently, each under its own
timeout, and fails while the service is shutting down so load balancers stop sending traffic.
Format: draft-inadarei-api-health-check (``status`` pass/fail, ``checks`` per dependency).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

HEALTH_JSON = "application/health+json"

# A check returns an optional human-readable note and raises when the dependency is unusable.
CheckFunction = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Check:
    name: str  # "<component>:<measurement>", e.g. "nats:connection"
    run: CheckFunction
    timeout: float
    component_type: str


@dataclass
class HealthRegistry:
    service_id: str
    release_id: str
    checks: list[Check] = field(default_factory=list)
    shutting_down: bool = False

    def add(
        self,
        name: str,
        run: CheckFunction,
        *,
        timeout: float = 1.0,
        component_type: str = "component",
    ) -> None:
        self.checks.append(Check(name, run, timeout, component_type))

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        results = await asyncio.gather(*(self._run(check) for check in self.checks))
        checks: dict[str, list[dict[str, Any]]] = {
            check.name: [result] for check, result in zip(self.checks, results, strict=True)
        }
        if self.shutting_down:
            checks["lifecycle:shutdown"] = [
                {"status": "fail", "output": "the service is shutting down", "time": _now()}
            ]
        ready = all(entry[0]["status"] == "pass" for entry in checks.values())
        return ready, self._document("pass" if ready else "fail", checks)

    def liveness(self) -> dict[str, Any]:
        return self._document("pass", {})

    def _document(self, status: str, checks: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        return {
            "status": status,
            "serviceId": self.service_id,
            "releaseId": self.release_id,
            "checks": checks,
        }

    @staticmethod
    async def _run(check: Check) -> dict[str, Any]:
        started = time.perf_counter()
        result: dict[str, Any] = {"componentType": check.component_type, "time": _now()}
        try:
            note = await asyncio.wait_for(check.run(), timeout=check.timeout)
        except TimeoutError:
            result.update(status="fail", output=f"no answer within {check.timeout} s")
        except Exception as error:  # a failing check reports; it never breaks the endpoint
            result.update(status="fail", output=f"{type(error).__name__}: {error}")
        else:
            result.update(status="pass", output=note or "")
        result.update(observedValue=round(time.perf_counter() - started, 6), observedUnit="s")
        return result


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _health_response(document: dict[str, Any], status_code: int) -> Response:
    return Response(
        orjson.dumps(document),
        status_code=status_code,
        media_type=HEALTH_JSON,
        headers={"cache-control": "no-store"},
    )


router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_class=Response, summary="Liveness: the process is running")
async def live(request: Request) -> Response:
    registry: HealthRegistry = request.app.state.health
    return _health_response(registry.liveness(), 200)


@router.get(
    "/ready",
    response_class=Response,
    summary="Readiness: dependencies answer and the service is not shutting down",
    responses={503: {"description": "Not ready"}},
)
async def ready(request: Request) -> Response:
    registry: HealthRegistry = request.app.state.health
    is_ready, document = await registry.readiness()
    return _health_response(document, 200 if is_ready else 503)
