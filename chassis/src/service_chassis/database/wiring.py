"""A database and a broker together: a unit of work's ``publish`` writes to the outbox with the
messaging publisher's encoding and destination, a commit that wrote events wakes the relay, and
the consumer records handled event ids in the inbox."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ..messaging import Messaging
from .database import Database
from .inbox import Inbox
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
    messaging.inbox = Inbox(database)
    return relay
