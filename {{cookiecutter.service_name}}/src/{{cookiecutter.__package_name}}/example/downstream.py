"""Example outbound calls to the ``downstream`` service through its resilient client:
``GET /downstream`` fetches it, ``POST /downstream`` relays a JSON body to it.

The target is the declared downstream's URL (``DOWNSTREAM_URL``), never the request's. It is
declared optional, so the service runs without it and these routes answer a 503 problem that
names the variable. Failures reach the caller as problem details raised by the client itself:
503 while the circuit breaker is open (with ``Retry-After``) or the bulkhead is full, 504 when
the deadline passed, 502 when the downstream could not be reached or answered 5xx.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, Header
from pydantic import BaseModel
from service_chassis import IDEMPOTENCY_KEY, Downstream, ResilientClient, Service

DOWNSTREAM = Downstream("downstream", optional=True)
Target = Annotated[ResilientClient, Depends(DOWNSTREAM)]

router = APIRouter(prefix="/downstream", tags=["downstream"])


class DownstreamAnswer(BaseModel):
    status: int
    body: Any


ERRORS: dict[int | str, dict[str, Any]] = {502: {}, 503: {}, 504: {}}


def _answer(response: httpx.Response) -> DownstreamAnswer:
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return DownstreamAnswer(
        status=response.status_code, body=response.json() if is_json else response.text
    )


@router.get("", responses=ERRORS)
async def call_downstream(target: Target) -> DownstreamAnswer:
    """GET the downstream: retried on failure, as GET is idempotent."""
    return _answer(await target.get(""))


@router.post("", responses=ERRORS)
async def relay_to_downstream(
    target: Target,
    payload: Annotated[dict[str, Any], Body()],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> DownstreamAnswer:
    """POST the JSON body on to the downstream. Not retried (a POST may not be safe to repeat)
    unless the caller sent an ``Idempotency-Key``, which goes along with it."""
    headers = {IDEMPOTENCY_KEY: idempotency_key} if idempotency_key else None
    return _answer(await target.post("", json=payload, headers=headers))


def install(service: Service) -> None:
    service.declare(DOWNSTREAM)
    service.include_router(router)
