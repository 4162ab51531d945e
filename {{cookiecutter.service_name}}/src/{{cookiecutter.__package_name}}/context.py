"""What the app factory builds once and hands to every part of the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import httpx
from opentelemetry.sdk.trace import TracerProvider

from .health import HealthRegistry
from .metrics import Metrics
from .outbound import Downstreams
from .settings import Settings


class Component(Protocol):
    """Something with a life of its own: started in order, stopped in reverse order."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServiceContext:
    settings: Settings
    tracer_provider: TracerProvider
    metrics: Metrics
    health: HealthRegistry
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)
    # The resilient client of each named downstream (outbound.py); call downstreams through it.
    downstreams: Downstreams = field(init=False)

    def __post_init__(self) -> None:
        self.downstreams = Downstreams(
            clients=self.clients, tracer_provider=self.tracer_provider, metrics=self.metrics
        )
