"""The few Consul HTTP API calls the service makes, and nothing else.

Endpoints (Consul's HTTP API, v1): ``PUT /v1/agent/service/register``,
``PUT /v1/agent/service/deregister/:service_id``, ``GET /v1/agent/service/:service_id`` and
``GET /v1/health/service/:service?passing=true``. The ACL token travels in ``X-Consul-Token``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from .settings import DiscoverySettings


class ConsulError(Exception):
    """Consul could not be reached, did not answer in time, or refused the call."""


class ConsulUnreachable(ConsulError):
    """No connection to the agent: the call was never sent."""


@dataclass(frozen=True)
class Instance:
    service_id: str
    address: str
    port: int


class ConsulAgent:
    def __init__(self, settings: DiscoverySettings) -> None:
        headers = {}
        if settings.consul_http_token is not None:
            headers["X-Consul-Token"] = settings.consul_http_token.get_secret_value()
        self.url = settings.consul_url
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=settings.consul_timeout_seconds,
            follow_redirects=False,
        )

    async def register(self, definition: dict[str, Any]) -> None:
        await self._call("PUT", "/v1/agent/service/register", json=definition)

    async def deregister(self, service_id: str) -> None:
        """Remove the instance; one the agent does not know is already gone."""
        with contextlib.suppress(_NotFound):
            await self._call("PUT", f"/v1/agent/service/deregister/{quote(service_id, safe='')}")

    async def is_registered(self, service_id: str) -> bool:
        try:
            await self._call("GET", f"/v1/agent/service/{quote(service_id, safe='')}")
        except _NotFound:
            return False
        return True

    async def passing_instances(self, service: str) -> list[Instance]:
        response = await self._call(
            "GET", f"/v1/health/service/{quote(service, safe='')}", params={"passing": "true"}
        )
        try:
            return [_instance(entry) for entry in response.json()]
        except (ValueError, KeyError, TypeError) as error:
            raise ConsulError(f"Consul answered an unreadable instance list: {error}") from None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise ConsulUnreachable(
                f"Consul at {self.url} is unreachable ({type(error).__name__})"
            ) from None
        except httpx.TimeoutException:
            raise ConsulError(f"Consul at {self.url} did not answer in time") from None
        except httpx.TransportError as error:
            raise ConsulError(
                f"Consul at {self.url} is unreachable ({type(error).__name__})"
            ) from None
        if response.status_code == 404:
            raise _NotFound(response.text.strip())
        if response.status_code >= 300:
            raise ConsulError(
                f"Consul answered {response.status_code}: {response.text.strip()[:200]}"
            )
        return response


class _NotFound(ConsulError):
    pass


def _instance(entry: dict[str, Any]) -> Instance:
    service = entry["Service"]
    # An empty service address means "the node's address", as Consul's DNS interface does.
    address = service.get("Address") or entry["Node"]["Address"]
    return Instance(service_id=str(service["ID"]), address=str(address), port=int(service["Port"]))
