"""Example outbound calls to ``DOWNSTREAM_URL`` through the resilient client: ``GET
/downstream`` fetches it, ``POST /downstream`` relays a JSON body to it.

The target comes from settings, never from the request. Failures reach the caller as problem
details raised by the client itself (resilience/errors.py): 503 while the circuit breaker is
open (with ``Retry-After``) or the bulkhead is full, 504 when the deadline passed, 502 when the
downstream could not be reached or answered 5xx, with its status but never its body.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Request
from pydantic import BaseModel

from ..problems import Problem
from ..resilience.client import IDEMPOTENCY_KEY, ResilientClient
from ..resilience.settings import DownstreamSettings
from ..settings import Settings

router = APIRouter(prefix="/downstream", tags=["downstream"])

DOWNSTREAM = "downstream"


def downstream_settings(settings: Settings) -> DownstreamSettings:
    """The example downstream's settings: its URL and connection from the service settings
    (``DOWNSTREAM_URL`` is part of the service's contract), the other knobs from the same
    ``DOWNSTREAM_*`` variables (resilience/settings.py)."""
    return DownstreamSettings.from_env(
        DOWNSTREAM,
        url=settings.downstream_url,
        connect_timeout=settings.downstream_connect_timeout,
        read_timeout=settings.downstream_read_timeout,
        write_timeout=settings.downstream_write_timeout,
        pool_timeout=settings.downstream_pool_timeout,
        max_connections=settings.downstream_max_connections,
    )


class DownstreamNotConfigured(Problem):
    status = 503
    type = "urn:problem:downstream-not-configured"
    title = "Downstream not configured"


class DownstreamAnswer(BaseModel):
    status: int
    body: Any


ERRORS: dict[int | str, dict[str, Any]] = {502: {}, 503: {}, 504: {}}


def _client(request: Request) -> ResilientClient:
    client: ResilientClient | None = request.app.state.context.downstreams.get(DOWNSTREAM)
    if client is None:
        raise DownstreamNotConfigured("Set DOWNSTREAM_URL to give this endpoint a target.")
    return client


def _answer(response: httpx.Response) -> DownstreamAnswer:
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return DownstreamAnswer(
        status=response.status_code, body=response.json() if is_json else response.text
    )


@router.get("", responses=ERRORS)
async def call_downstream(request: Request) -> DownstreamAnswer:
    """GET the downstream: retried on failure, as GET is idempotent."""
    return _answer(await _client(request).get(""))


@router.post("", responses=ERRORS)
async def relay_to_downstream(
    request: Request, payload: Annotated[dict[str, Any], Body()]
) -> DownstreamAnswer:
    """POST the JSON body on to the downstream. Not retried (a POST may not be safe to repeat)
    unless the caller sent an ``Idempotency-Key``, which goes along with it."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    headers = {IDEMPOTENCY_KEY: key} if key else None
    return _answer(await _client(request).post("", json=payload, headers=headers))
