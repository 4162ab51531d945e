"""Outbox wiring: a unit of work's ``publish`` writes with the messaging publisher's encoding
and destination, and a commit that wrote events wakes the relay."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ..messaging import Messaging
from .database import Database
from .outbox import OutboxRelay
from .unit_of_work import OutboxWriter


def install_outbox(
    database: Database, messaging: Messaging, registry: CollectorRegistry
) -> OutboxRelay:
    relay = OutboxRelay(
        database.engine,
        messaging.transport.publish,
        database.settings,
        registry,
        connected=lambda: messaging.component.started,
        publish_timeout=messaging.settings.publish_timeout_seconds,
    )
    database.transactions.outbox = OutboxWriter(
        encode=messaging.publisher.encode,
        destination=messaging.settings.destination,
        written=relay.wake,
    )
    return relay
