"""The HTTP services this one calls: each declared once by name, each with one resilient client.

A declaration is a name: ``Downstream("payments")``. Its settings come from ``PAYMENTS_*``
variables (``PAYMENTS_URL``, ``PAYMENTS_TIMEOUT_SECONDS``, ... see resilience/settings.py),
checked when the app is built, URL or not. Its client is shared by every route and message
handler of the service, so it has one breaker, one bulkhead, one retry budget and one set of
metric labels. A ``consul://name`` URL is resolved through Consul when discovery is Consul.

A declared downstream without a URL stops the service at start with a message naming the
variable, unless it is declared ``optional``: then its calls answer a 503 problem that names
the variable, and the rest of the service works.

The declaration is also the FastAPI dependency that hands a route its client::

    PAYMENTS = Downstream("payments")
    Payments = Annotated[ResilientClient, Depends(PAYMENTS)]

    @router.post("/orders")
    async def place(order: Order, payments: Payments) -> Placed: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
from fastapi import Request
from opentelemetry.trace import TracerProvider

from .configuration import ConfigurationError
from .metrics import Metrics
from .outbound import Resolver, build_client, client_config
from .resilience.breaker import CircuitBreaker
from .resilience.bulkhead import Bulkhead
from .resilience.client import BreakerObserver, ResilientClient
from .resilience.metrics import ResilienceMetrics
from .resilience.settings import DownstreamSettings, env_prefix

# Which resolution a URL needs (Consul's for consul://), or None for plain DNS.
ResolverFor = Callable[[str], Resolver | None]


class MissingDownstreamURLError(ConfigurationError):
    """A required downstream has no URL: the service cannot start."""

    def __init__(self, downstream: Downstream) -> None:
        super().__init__(
            [
                f"{downstream.url_variable} is not set: the downstream {downstream.name!r} "
                f"needs a URL (or declare it Downstream({downstream.name!r}, optional=True))"
            ]
        )
        self.downstream = downstream


class UndeclaredDownstreamError(KeyError):
    pass


@dataclass(frozen=True)
class Downstream:
    """A downstream this service calls, by name. ``optional``: may run without a URL."""

    name: str
    optional: bool = False

    @property
    def url_variable(self) -> str:
        return f"{env_prefix(self.name)}URL"

    async def __call__(self, request: Request) -> ResilientClient:
        # As a FastAPI dependency: the client the app declared under this name. (async, as
        # FastAPI runs a plain def dependency in a worker thread, on every request.)
        downstreams: Downstreams = request.app.state.downstreams
        return downstreams[self.name]


def _no_client() -> NoReturn:
    raise RuntimeError("an unconfigured downstream has no HTTP client")


class Downstreams(Mapping[str, ResilientClient]):
    """The resilient client of every declared downstream, by name."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider,
        metrics: Metrics,
        resolver_for: ResolverFor | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._duration = metrics.client_duration
        self._metrics = ResilienceMetrics(metrics.registry)
        self._observer = BreakerObserver()
        self._resolver_for = resolver_for
        self._declared: dict[str, Downstream] = {}
        self._resilient: dict[str, ResilientClient] = {}
        self._http: dict[str, httpx.AsyncClient] = {}

    def declare(self, downstream: Downstream, **overrides: Any) -> ResilientClient:
        """Make ``downstream``'s client from its settings (``overrides`` win over the
        environment). Declaring the same downstream again returns the same client."""
        name = downstream.name
        if name in self._declared:
            if self._declared[name] != downstream:
                raise ValueError(f"downstream {name!r} is declared twice, differently")
            return self._resilient[name]
        settings = DownstreamSettings.from_env(name, **overrides)
        missing = None
        if settings.url:
            self._http[name] = self._build_http(name, settings, settings.url)
        elif downstream.optional:
            missing = downstream.url_variable
        else:
            raise MissingDownstreamURLError(downstream)
        self._metrics.track(name)
        http = self._http
        resilient = ResilientClient(
            name,
            http=(lambda: http[name]) if missing is None else _no_client,
            timeout=settings.timeout_seconds,
            breaker=CircuitBreaker(
                name, settings.breaker_config(), listeners=(self._metrics, self._observer)
            ),
            bulkhead=Bulkhead(
                name,
                max_concurrent=settings.bulkhead_max_concurrent,
                max_wait=settings.bulkhead_max_wait_seconds,
                listeners=(self._metrics,),
            ),
            retry=settings.retry_policy(),
            budget=settings.retry_budget(),
            tracer=self._tracer_provider.get_tracer(__name__),
            retry_listeners=(self._metrics,),
            missing_url_variable=missing,
        )
        self._declared[name] = downstream
        self._resilient[name] = resilient
        return resilient

    def _build_http(self, name: str, settings: DownstreamSettings, url: str) -> httpx.AsyncClient:
        resolver = self._resolver_for(url) if self._resolver_for else None
        return build_client(
            client_config(name, settings, url),
            tracer_provider=self._tracer_provider,
            duration=self._duration,
            resolver=resolver,
        )

    @property
    def declarations(self) -> tuple[Downstream, ...]:
        return tuple(self._declared.values())

    async def aclose(self) -> None:
        for client in self._http.values():
            await client.aclose()

    def __getitem__(self, name: str) -> ResilientClient:
        try:
            return self._resilient[name]
        except KeyError:
            raise UndeclaredDownstreamError(
                f"no downstream {name!r} is declared; declared: {sorted(self._resilient)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._resilient)

    def __len__(self) -> int:
        return len(self._resilient)
