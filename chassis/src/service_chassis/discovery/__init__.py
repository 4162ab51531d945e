"""Service discovery through Consul: register this instance, resolve ``consul://`` targets.

``install_consul`` registers the instance as a lifespan component with a readiness check, and
returns the ``resolver_for`` that gives every declared downstream with a ``consul://`` URL a
resolving connection pool (under the retries and the breaker, so each attempt re-resolves).
Needs the ``service-chassis[consul]`` extra (no package beyond httpx today, kept for clarity).
"""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from ..configuration import from_validation
from ..health import HealthRegistry
from ..outbound import Resolver
from ..settings import ServiceSettings
from .consul import ConsulAgent
from .registration import Registration, service_definition
from .resolver import ConsulResolver, ResolvingTransport, is_consul_url
from .settings import DiscoverySettings

__all__ = ["ConsulDiscovery", "DiscoverySettings", "install_consul"]


class ConsulDiscovery:
    def __init__(self, registration: Registration, settings: DiscoverySettings) -> None:
        self.registration = registration
        self.settings = settings

    def resolver_for(self, url: str) -> Resolver | None:
        """The resolution a downstream URL needs: Consul's for ``consul://``, else none."""
        if not is_consul_url(url):
            return None
        settings = self.settings

        def resolving(pool: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
            resolver = ConsulResolver(
                ConsulAgent(settings),
                ttl=settings.consul_cache_ttl_seconds,
                failed_for=settings.consul_failed_instance_seconds,
            )
            return ResolvingTransport(pool, resolver)

        return resolving


def install_consul(service: ServiceSettings, health: HealthRegistry) -> ConsulDiscovery:
    try:
        settings = DiscoverySettings()
    except ValidationError as error:
        raise from_validation(error, DiscoverySettings) from None
    registration = Registration(
        ConsulAgent(settings),
        service_definition(service, settings),
        health=health,
        settings=settings,
    )
    health.add("consul:registration", registration.check, component_type="component")
    return ConsulDiscovery(registration, settings)
