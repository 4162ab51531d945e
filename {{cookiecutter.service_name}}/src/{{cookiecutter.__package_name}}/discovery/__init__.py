"""Service discovery through Consul: register this instance, resolve ``consul://`` targets.

Found at run time by ``extensions.py``; bakes with another ``discovery`` option do not have
this package.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from ..api.downstream import DOWNSTREAM, downstream_settings
from ..context import ServiceContext
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
    """Remake the example downstream with Consul resolution when its URL says ``consul://``."""
    if not is_consul_url(context.settings.downstream_url):
        return

    def resolving(pool: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        resolver = ConsulResolver(
            ConsulAgent(settings),
            ttl=settings.consul_cache_ttl_seconds,
            failed_for=settings.consul_failed_instance_seconds,
        )
        return ResolvingTransport(pool, resolver)

    # Replaces what app.py made for this name (nothing was opened yet); resolution sits on
    # the connection pool, under the retries and the breaker, so each attempt re-resolves.
    context.downstreams.add(DOWNSTREAM, downstream_settings(context.settings), resolver=resolving)
