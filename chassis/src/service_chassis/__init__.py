"""The microservice chassis: the mechanisms every service shares, versioned as one library.

Telemetry (tracing, JSON logs, RED metrics with exemplars), RFC 9457 problem details, health,
a request body limit, declared downstreams with resilient clients, messaging, discovery and
graceful shutdown. A service builds a ``Service`` from its settings, adds its routes, and runs
with ``run``. Messaging needs a broker extra, Consul the ``consul`` extra.
"""

from ._version import __version__
from .downstreams import Downstream, Downstreams, MissingDownstreamURLError
from .problems import Problem
from .resilience.client import IDEMPOTENCY_KEY, ResilientClient
from .resilience.errors import (
    DownstreamBusy,
    DownstreamCircuitOpen,
    DownstreamError,
    DownstreamNotConfigured,
    DownstreamTimeout,
    DownstreamUnavailable,
)
from .server import run
from .service import Service, service_of
from .settings import ServiceSettings

__all__ = [
    "IDEMPOTENCY_KEY",
    "Downstream",
    "DownstreamBusy",
    "DownstreamCircuitOpen",
    "DownstreamError",
    "DownstreamNotConfigured",
    "DownstreamTimeout",
    "DownstreamUnavailable",
    "Downstreams",
    "MissingDownstreamURLError",
    "Problem",
    "ResilientClient",
    "Service",
    "ServiceSettings",
    "__version__",
    "run",
    "service_of",
]
