"""The in-flight HTTP requests gauge, counted in plain integers and read at scrape time.

A prometheus_client ``Gauge`` takes a lock on every ``inc`` and ``dec``: two locked operations
on every request for a figure read only when Prometheus scrapes. The request observer counts
in a dict of integers instead (on the event loop's one thread, where the requests run), and
this collector turns the counts into the same gauge family when the registry is collected:
the same name, help, label and samples, a method's series staying at 0 once it was seen.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

NAME = "http_server_active_requests"
DOCUMENTATION = "HTTP server requests in flight."
LABELS = ("http_request_method",)


class ActiveRequests(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        # Requests in flight by method (OpenTelemetry's value, "_OTHER" for unknown ones).
        self.by_method: dict[str, int] = {}
        registry.register(self)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(NAME, DOCUMENTATION, labels=LABELS)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(NAME, DOCUMENTATION, labels=LABELS)
        # A copy: a scrape from another thread must not see the dict change size under it.
        for method, count in list(self.by_method.items()):
            family.add_metric([method], float(count))
        yield family
