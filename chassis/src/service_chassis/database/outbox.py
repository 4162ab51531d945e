"""The outbox relay: publishes what committed transactions wrote to the outbox.

Each round takes up to ``OUTBOX_BATCH_SIZE`` unsent rows in ``position`` order with
``FOR UPDATE SKIP LOCKED``, so replicas share the work without taking the same row; publishes
them in that order, with the event id as the message id (so the broker's de-duplication applies
to a row published twice); stamps ``sent_at`` in the same transaction. A publish that fails ends
the round: the rest of the batch waits, in order, for the next. A relay killed after publishing
and before its commit publishes those rows again: delivery is at least once, and the consumer's
inbox (or the broker's de-duplication window) makes the copy harmless.

Batches of different replicas go out at the same time, so across replicas an event may overtake
an earlier one. With ``OUTBOX_STRICT_ORDER`` a round first takes an advisory lock: one replica
relays at a time (the others stand by and take over) and events leave in commit order.

Each publish runs in the trace context the writing transaction stored, so the broker hop is a
child of the request that made the change. A commit that wrote events wakes the relay at once;
otherwise it looks every ``OUTBOX_POLL_SECONDS`` (rows other replicas or a crash left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..outages import OutageLog
from .schema import inbox_table, outbox_table
from .settings import DatabaseSettings
from .telemetry import untraced

log = structlog.get_logger(__name__)

MAX_BACKOFF = 30.0
# pg_try_advisory_xact_lock key of the strictly ordered relay (the migrations use another).
STRICT_ORDER_LOCK = 0x0B_7B0C


class Publish(Protocol):
    async def __call__(
        self, body: bytes, *, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None: ...


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "outbox_lag_seconds",
            "Age of the oldest event in the outbox not yet published (0 when none).",
            registry=registry,
        )
        self.backlog = Gauge(
            "outbox_backlog_events", "Events in the outbox not yet published.", registry=registry
        )
        self.relayed = Counter(
            "outbox_relayed_events",
            "Events the relay published and marked sent.",
            registry=registry,
        )
        self.failures = Counter(
            "outbox_relay_failures",
            "Relay rounds that stopped on a failure (broker or database).",
            registry=registry,
        )


class OutboxRelay:
    """A lifespan component: started after the broker, stopped before it."""

    def __init__(
        self,
        engine: AsyncEngine,
        publish: Publish,
        settings: DatabaseSettings,
        registry: CollectorRegistry,
        *,
        connected: Callable[[], bool] = lambda: True,
        publish_timeout: float = 5.0,
    ) -> None:
        self.name = "outbox relay"
        self._engine = engine
        self._publish = publish
        self._settings = settings
        self._connected = connected
        self._publish_timeout = publish_timeout
        self.metrics = OutboxMetrics(registry)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog("outbox relay")

    def wake(self) -> None:
        """A transaction wrote events: look now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = self._settings.outbox_poll_seconds
        while True:
            try:
                with untraced():
                    relayed = await self.relay_once()
                    await self.measure()
            except Exception as error:
                self.metrics.failures.inc()
                self._outage.failed(error_type=type(error).__qualname__, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            self._outage.recovered()
            backoff = self._settings.outbox_poll_seconds
            if relayed == self._settings.outbox_batch_size:
                continue  # more are waiting
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.outbox_poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def relay_once(self) -> int:
        """One round: publish a batch of unsent rows in order; return how many were sent."""
        if not self._connected():
            return 0
        async with self._engine.begin() as connection:
            if (
                self._settings.outbox_strict_order
                and not (
                    await connection.execute(
                        select(func.pg_try_advisory_xact_lock(STRICT_ORDER_LOCK))
                    )
                ).scalar()
            ):
                return 0  # another replica is relaying
            rows = (
                await connection.execute(
                    select(
                        outbox_table.c.position,
                        outbox_table.c.event_id,
                        outbox_table.c.destination,
                        outbox_table.c.body,
                        outbox_table.c.headers,
                    )
                    .where(outbox_table.c.sent_at.is_(None))
                    .order_by(outbox_table.c.position)
                    .limit(self._settings.outbox_batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            sent: list[int] = []
            failure: Exception | None = None
            for row in rows:
                try:
                    await self._publish_row(dict(row._mapping))
                except Exception as error:
                    failure = error
                    break
                sent.append(row.position)
            if sent:
                await connection.execute(
                    update(outbox_table)
                    .where(outbox_table.c.position.in_(sent))
                    .values(sent_at=func.now())
                )
        self.metrics.relayed.inc(len(sent))
        if failure is not None:
            raise failure
        return len(sent)

    async def _publish_row(self, row: Mapping[str, Any]) -> None:
        carried: dict[str, str] = dict(row["headers"] or {})
        token = otel_context.attach(propagate.extract(carried))
        try:
            async with asyncio.timeout(self._publish_timeout):
                await self._publish(
                    bytes(row["body"]),
                    destination=row["destination"],
                    message_id=str(row["event_id"]),
                    headers={"content-type": "application/json"},
                )
        finally:
            otel_context.detach(token)

    async def measure(self) -> None:
        """Lag and backlog for the metrics; sent rows and old inbox ids past retention go."""
        async with self._engine.begin() as connection:
            count, oldest = (
                await connection.execute(
                    select(
                        func.count(),
                        func.coalesce(
                            func.extract("epoch", func.now() - func.min(outbox_table.c.created_at)),
                            0,
                        ),
                    ).where(outbox_table.c.sent_at.is_(None))
                )
            ).one()
            await connection.execute(
                delete(outbox_table).where(
                    outbox_table.c.sent_at
                    < func.now() - _seconds(self._settings.outbox_retention_seconds)
                )
            )
            await connection.execute(
                delete(inbox_table).where(
                    inbox_table.c.handled_at
                    < func.now() - _seconds(self._settings.inbox_retention_seconds)
                )
            )
        self.metrics.backlog.set(count)
        self.metrics.lag.set(float(oldest))


def _seconds(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


__all__: Sequence[str] = ("OutboxMetrics", "OutboxRelay", "Publish")
