"""How OTLP/HTTP exports travel: the SDK's urllib3 transport where it sends what requests
would, requests (the SDK's default) everywhere else.

Posting a batch of 512 spans through requests costs about 2.6 us of CPU per span on the export
thread, which holds the interpreter lock meanwhile; through urllib3, the library requests
itself sends with, about half that (benchmarks/bench_export.py prints both). What requests
adds is its environment: proxies (``HTTP_PROXY``, ``NO_PROXY``), its own CA bundle (certifi,
``REQUESTS_CA_BUNDLE``), ``.netrc`` credentials. So urllib3 is used only for a plain
``http://`` endpoint that no proxy applies to, with no credentials configured and no
session of a credential provider; an ``https://`` endpoint, a proxy or a provider keeps
requests, and the exporter's other settings (headers, timeout, compression, retries) are the
SDK's either way.
"""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from opentelemetry.exporter.http.transport._base import BaseHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

# The SDK's variables naming a session of a credential provider (requests only).
_PROVIDER_VARIABLES = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


def _netrc_names_host(host: str) -> bool:
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not os.path.isfile(path):
        return False
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return True  # requests would try it: leave the choice to requests


def requests_adds_something(endpoint: str) -> bool:
    """Whether requests would send an export to ``endpoint`` differently from urllib3."""
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        return True  # TLS: requests trusts certifi's bundle, urllib3 the system's
    if any(os.environ.get(name) for name in _PROVIDER_VARIABLES):
        return True
    proxies = getproxies()
    if (proxies.get("http") or proxies.get("all")) and not proxy_bypass(parts.netloc):
        return True
    return _netrc_names_host(parts.hostname)


def lean_transport(endpoint: str) -> BaseHTTPTransport | None:
    """urllib3 for ``endpoint`` when requests would add nothing; else None (the SDK's own)."""
    if requests_adds_something(endpoint):
        return None
    return Urllib3HTTPTransport(verify=True, cert=None)


__all__ = ["lean_transport", "requests_adds_something"]
