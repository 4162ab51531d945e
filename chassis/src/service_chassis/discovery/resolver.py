"""Resolve ``consul://<service>/path`` URLs to passing instances, per attempt.

``consul://inventory/stock`` means "GET /stock on some instance of inventory that passes its
Consul checks", over HTTP; ``consul+https://`` uses HTTPS. Any other URL is left alone, so
plain ``http://`` targets and Kubernetes DNS names keep working next to it.

The instance list comes from ``GET /v1/health/service/<name>?passing=true`` and is reused for
a short TTL. Calls rotate over the instances; an instance that refuses the connection (or
does not accept it in time) is passed over for a while and the call moves on to the next
one, which is safe for every method because nothing was sent. If Consul cannot answer, the
last list it gave is used until it can.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable

import httpx
import structlog
from opentelemetry import trace

from .consul import ConsulAgent, ConsulError, Instance

log = structlog.get_logger(__name__)

SCHEMES = {"consul": "http", "consul+https": "https"}


def is_consul_url(url: str | None) -> bool:
    return url is not None and url.split("://", 1)[0].lower() in SCHEMES


class ConsulResolver:
    def __init__(
        self,
        agent: ConsulAgent,
        *,
        ttl: float,
        failed_for: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._agent = agent
        self._ttl = ttl
        self._failed_for = failed_for
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Instance]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed_until: dict[tuple[str, int], float] = {}
        # A random start, so that many callers that start together do not all pick the
        # same first instance.
        self._turn = itertools.count(random.randrange(1 << 16))

    async def instances(self, service: str) -> list[Instance]:
        cached = self._fresh(service)
        if cached is not None:
            return cached
        # One lookup per service at a time: concurrent calls wait for it instead of piling
        # onto Consul when the cache expires.
        async with self._locks.setdefault(service, asyncio.Lock()):
            cached = self._fresh(service)
            if cached is not None:
                return cached
            try:
                instances = await self._agent.passing_instances(service)
            except ConsulError as error:
                stale = self._cache.get(service)
                if stale is None:
                    raise
                # Keep serving from the last answer; ask Consul again after another TTL.
                log.warning("consul lookup failed; using the last instances", error=str(error))
                self._cache[service] = (self._clock(), stale[1])
                return stale[1]
            self._cache[service] = (self._clock(), instances)
            return instances

    def order(self, instances: list[Instance]) -> list[Instance]:
        """The instances in the order to try them: rotated per call, recent failures last."""
        if not instances:
            return []
        start = next(self._turn) % len(instances)
        rotated = instances[start:] + instances[:start]
        now = self._clock()
        usable = [i for i in rotated if self._failed_until.get(_key(i), 0.0) <= now]
        failed = [i for i in rotated if self._failed_until.get(_key(i), 0.0) > now]
        return usable + failed

    def mark_failed(self, instance: Instance) -> None:
        self._failed_until[_key(instance)] = self._clock() + self._failed_for

    def _fresh(self, service: str) -> list[Instance] | None:
        cached = self._cache.get(service)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        return None

    async def aclose(self) -> None:
        await self._agent.aclose()


class ResolvingTransport(httpx.AsyncBaseTransport):
    """Sits on the connection pool: each attempt goes to one concrete instance."""

    def __init__(self, inner: httpx.AsyncBaseTransport, resolver: ConsulResolver) -> None:
        self._inner = inner
        self._resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme = SCHEMES.get(request.url.scheme)
        if scheme is None:
            return await self._inner.handle_async_request(request)
        service = request.url.host
        try:
            instances = await self._resolver.instances(service)
        except ConsulError as error:
            raise httpx.ConnectError(
                f"cannot resolve {service!r}: {error}", request=request
            ) from None
        candidates = self._resolver.order(instances)
        if not candidates:
            raise httpx.ConnectError(
                f"Consul has no passing instance of {service!r}", request=request
            )
        span = trace.get_current_span()
        last_failure: httpx.TransportError | None = None
        for instance in candidates:
            # The Host header keeps the service name, as it would with DNS-based discovery.
            attempt = httpx.Request(
                request.method,
                request.url.copy_with(scheme=scheme, host=instance.address, port=instance.port),
                headers=request.headers,
                stream=request.stream,
                extensions=request.extensions,
            )
            span.set_attribute("network.peer.address", instance.address)
            span.set_attribute("network.peer.port", instance.port)
            try:
                return await self._inner.handle_async_request(attempt)
            except (httpx.ConnectError, httpx.ConnectTimeout) as failure:
                self._resolver.mark_failed(instance)
                log.warning(
                    "instance refused the connection; trying the next",
                    service=service,
                    instance=instance.service_id,
                    error=type(failure).__name__,
                )
                last_failure = failure
        assert last_failure is not None
        raise last_failure

    async def aclose(self) -> None:
        await self._inner.aclose()
        await self._resolver.aclose()


def _key(instance: Instance) -> tuple[str, int]:
    return instance.address, instance.port
