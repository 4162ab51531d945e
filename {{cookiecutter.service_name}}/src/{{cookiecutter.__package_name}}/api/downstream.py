"""Example outbound call: fetch ``DOWNSTREAM_URL`` through the shared client.

The target comes from settings, never from the request. Failures reach the caller as problem
details that say what went wrong without passing on the downstream's body.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from ..problems import Problem

router = APIRouter(prefix="/downstream", tags=["downstream"])

DOWNSTREAM = "downstream"


class DownstreamNotConfigured(Problem):
    status = 503
    type = "urn:problem:downstream-not-configured"
    title = "Downstream not configured"


class DownstreamTimeout(Problem):
    status = 504
    type = "urn:problem:downstream-timeout"
    title = "Downstream timed out"


class DownstreamUnavailable(Problem):
    status = 502
    type = "urn:problem:downstream-unavailable"
    title = "Downstream unavailable"


class DownstreamAnswer(BaseModel):
    status: int
    body: Any


@router.get("", responses={502: {}, 503: {}, 504: {}})
async def call_downstream(request: Request) -> DownstreamAnswer:
    client: httpx.AsyncClient | None = request.app.state.context.clients.get(DOWNSTREAM)
    if client is None:
        raise DownstreamNotConfigured("Set DOWNSTREAM_URL to give this endpoint a target.")
    try:
        response = await client.get("")
    except httpx.TimeoutException:
        raise DownstreamTimeout("The downstream did not answer in time.") from None
    except httpx.TransportError as error:
        raise DownstreamUnavailable(
            f"The downstream could not be reached ({type(error).__name__})."
        ) from None
    if response.status_code >= 500:
        raise DownstreamUnavailable(
            f"The downstream answered {response.status_code}.",
            extensions={"downstream_status": response.status_code},
        )
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return DownstreamAnswer(
        status=response.status_code, body=response.json() if is_json else response.text
    )
