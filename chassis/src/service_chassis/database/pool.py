"""The connection pool, seen from Prometheus, on the database client conventions' pool metrics
(``db.client.connection.*``, semantic conventions 1.33+, status development):

- ``db_client_connection_count{db_client_connection_state="idle"|"used"}`` and
  ``db_client_connection_max``: read from the pool at scrape time, so saturation is
  ``used / max``;
- ``db_client_connection_pending_requests``: callers waiting for a connection now;
- ``db_client_connection_wait_time_seconds``: how long they waited;
- ``db_client_connection_timeouts_total``: waits that gave up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

POOL_LABEL = "db_client_connection_pool_name"
WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class _PoolCollector(Collector):
    def __init__(self, engine: AsyncEngine, name: str, maximum: int) -> None:
        self._engine = engine
        self._name = name
        self._max = maximum

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pool = self._engine.sync_engine.pool
        used = pool.checkedout() if isinstance(pool, QueuePool) else 0
        idle = pool.checkedin() if isinstance(pool, QueuePool) else 0
        count = GaugeMetricFamily(
            "db_client_connection_count",
            "Connections in the pool by state (db.client.connection.count).",
            labels=[POOL_LABEL, "db_client_connection_state"],
        )
        count.add_metric([self._name, "idle"], idle)
        count.add_metric([self._name, "used"], used)
        maximum = GaugeMetricFamily(
            "db_client_connection_max",
            "Most connections the pool may open (db.client.connection.max).",
            labels=[POOL_LABEL],
        )
        maximum.add_metric([self._name], self._max)
        return [count, maximum]


class PoolMetrics:
    def __init__(
        self, registry: CollectorRegistry, engine: AsyncEngine, name: str, maximum: int
    ) -> None:
        registry.register(_PoolCollector(engine, name, maximum))
        self.pending = Gauge(
            "db_client_connection_pending_requests",
            "Callers waiting for a connection (db.client.connection.pending_requests).",
            [POOL_LABEL],
            registry=registry,
        ).labels(name)
        self.wait_time = Histogram(
            "db_client_connection_wait_time_seconds",
            "Time to get a connection from the pool (db.client.connection.wait_time).",
            [POOL_LABEL],
            buckets=WAIT_BUCKETS,
            registry=registry,
        ).labels(name)
        self.timeouts = Counter(
            "db_client_connection_timeouts",
            "Waits for a connection that gave up (db.client.connection.timeouts).",
            [POOL_LABEL],
            registry=registry,
        ).labels(name)

    @asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """Around taking a connection: pending while it lasts, its time, a timeout counted."""
        self.pending.inc()
        started = time.perf_counter()
        try:
            yield
        except TimeoutError:
            self.timeouts.inc()
            raise
        except asyncio.CancelledError:
            raise
        finally:
            self.pending.dec()
            self.wait_time.observe(time.perf_counter() - started)
