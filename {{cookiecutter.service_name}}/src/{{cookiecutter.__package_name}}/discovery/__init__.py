"""Service discovery through Consul: register this instance, resolve ``consul://`` targets.

Found at run time by ``extensions.py``; bakes with another ``discovery`` option do not have
this package.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from ..api.downstream import DOWNSTREAM
from ..context import ServiceContext
from ..outbound import ClientConfig, build_client
from .consul import ConsulAgent
from .registration import Registration, service_definition
from .resolver import ConsulResolver, ResolvingTransport, is_consul_url
from .settings import DiscoverySettings

__all__ = ["DiscoverySettings", "install"]


def install(app: FastAPI, context: ServiceContext) -> None:
    settings = DiscoverySettings()
    registration = Registration(
        ConsulAgent(settings),
        service_definition(context.settings, settings),
        health=context.health,
        settings=settings,
    )
    context.components.append(registration)
    context.health.add("consul:registration", registration.check, component_type="component")
    app.state.registration = registration
    _resolve_downstream(context, settings)


def _resolve_downstream(context: ServiceContext, settings: DiscoverySettings) -> None:
    """Rebuild the example's client with Consul resolution when its URL says ``consul://``."""
    service = context.settings
    url = service.downstream_url
    if url is None or not is_consul_url(url):
        return

    def resolving(pool: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        resolver = ConsulResolver(
            ConsulAgent(settings),
            ttl=settings.consul_cache_ttl_seconds,
            failed_for=settings.consul_failed_instance_seconds,
        )
        return ResolvingTransport(pool, resolver)

    # The client made for this URL in app.py has opened nothing yet; this one replaces it
    # under the same name, where callers look it up.
    context.clients[DOWNSTREAM] = build_client(
        ClientConfig(
            name=DOWNSTREAM,
            base_url=url,
            connect_timeout=service.downstream_connect_timeout,
            read_timeout=service.downstream_read_timeout,
            write_timeout=service.downstream_write_timeout,
            pool_timeout=service.downstream_pool_timeout,
            max_connections=service.downstream_max_connections,
        ),
        tracer_provider=context.tracer_provider,
        duration=context.metrics.client_duration,
        resolver=resolving,
    )
