"""``Database``: the engine and its pool, telemetry, readiness, and the lifespan component.

Built by the ``Service`` when ``DATABASE_SYSTEM=postgres``. Starting never fails the service:
with the database down it comes up not ready and readiness follows the database (the pool
pings a connection before handing it out, so a restarted database is used again without a
restart of the service). Stopping disposes of the pool; the service stops it after the HTTP
server and the consumer have finished their in-flight work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from .._version import __version__
from ..health import HealthRegistry
from .pool import PoolMetrics
from .settings import DatabaseSettings
from .telemetry import SYSTEM, StatementTelemetry, operation_duration, untraced
from .unit_of_work import Transactions, UnitOfWork
from .url import DatabaseURL

log = structlog.get_logger(__name__)

READINESS_TIMEOUT = 1.0


class Database:
    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        service_name: str,
        tracer_provider: TracerProvider,
        registry: CollectorRegistry,
        health: HealthRegistry | None = None,
    ) -> None:
        self.name = "database"
        self.settings = settings
        self.url: DatabaseURL = settings.database_url
        self.engine: AsyncEngine = create_async_engine(
            self.url.url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout_seconds,
            pool_recycle=settings.pool_recycle_seconds,
            pool_pre_ping=True,
            connect_args={
                "timeout": settings.connect_timeout_seconds,
                # Shows in pg_stat_activity: which service holds a connection.
                "server_settings": {"application_name": service_name[:63]},
            },
        )
        tracer = tracer_provider.get_tracer("service_chassis.database", __version__)
        StatementTelemetry(self.url, tracer, operation_duration(registry)).instrument(self.engine)
        self.pool_metrics = PoolMetrics(
            registry,
            self.engine,
            f"{self.url.host}:{self.url.port}/{self.url.database}",
            settings.pool_size + settings.max_overflow,
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.transactions = Transactions(
            self.sessions,
            self.pool_metrics,
            statement_timeout=settings.statement_timeout_seconds,
            pool_timeout=settings.pool_timeout_seconds,
        )
        if health is not None:
            health.add(
                f"{SYSTEM}:connection",
                self.check,
                timeout=READINESS_TIMEOUT,
                component_type="datastore",
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work: see ``unit_of_work.py``."""
        async with self.transactions.transaction() as work:
            yield work

    async def check(self) -> str:
        """Readiness: a round trip on a pooled connection."""
        with untraced():
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        return "connected"

    async def start(self) -> None:
        try:
            await self.check()
        except Exception as error:
            log.warning(
                "database not reachable: serving not ready until it is",
                url=self.url.redacted(),
                error_type=type(error).__qualname__,
            )
        else:
            log.info("database connected", url=self.url.redacted())

    async def stop(self) -> None:
        await self.engine.dispose()
        log.info("database pool closed", url=self.url.redacted())
