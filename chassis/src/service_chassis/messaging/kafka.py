"""Kafka: ``acks=all``, an idempotent producer, and offsets committed after handling.

One consumer in the service's group reads the events topic one record at a time, so that a
commit never covers a record that was not handled; the handler runs inside the reliable
consumer, which retries, dead-letters and only then lets the offset move. While a record is
retried, the records behind it on this instance wait (for the retry budget at most: Kafka
keeps order per partition); other instances carry on with their partitions. Scale with
partitions and replicas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy

from .settings import MessagingSettings
from .transport import (
    MESSAGE_ID_HEADER,
    BrokerLifecycle,
    Consume,
    Telemetry,
    broker_logger,
    header,
    subscriber_function,
    whole_message,
)

DEFAULT_URL = "127.0.0.1:9092"


class KafkaTransport(BrokerLifecycle):
    broker: KafkaBroker
    system = "kafka"

    def __init__(self, settings: MessagingSettings, telemetry: Telemetry | None) -> None:
        self.url = settings.broker_url or DEFAULT_URL
        self._settings = settings
        if telemetry is not None:
            self.telemetry = telemetry.for_transport(
                "kafka", consumer_group=settings.consumer_group
            )
        self._servers = [server.strip() for server in self.url.split(",")]
        self.broker = KafkaBroker(
            self._servers,
            # Every in-sync replica has the record before the publish returns, and a retried
            # send cannot write it twice.
            acks="all",
            enable_idempotence=True,
            graceful_timeout=settings.drain_seconds,
            logger=broker_logger("kafka"),
            # FastStream's per-message "Received"/"Processed" lines only at DEBUG.
            log_level=logging.DEBUG,
            # The subscriber takes the whole message (see whole_message): no injection needed.
            apply_types=False,
        )

    def subscribe(self, consume: Consume) -> None:
        subscriber = self.broker.subscriber(
            self._settings.destination,
            group_id=self._settings.consumer_group,
            # A new group starts from the oldest record, so nothing published before the
            # service first ran is skipped.
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=whole_message,
        )
        subscriber(
            subscriber_function(
                consume,
                telemetry=self.telemetry,
                destination=self._settings.destination,
                message_id=self.message_id,
            )
        )

    async def start(self) -> None:
        # aiokafka leaks a producer whose start failed: look for a reachable server first.
        await _any_reachable(self._servers)
        await self.broker.start()

    async def _send(
        self, body: bytes, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None:
        await self.broker.publish(
            body,
            destination,
            key=message_id.encode(),
            headers={**headers, MESSAGE_ID_HEADER: message_id},
        )

    async def delete_destinations(self) -> None:
        """Nothing: topics are usually managed outside the service; retention empties them."""

    def message_id(self, message: StreamMessage[Any]) -> str:
        return header(message, MESSAGE_ID_HEADER) or message.message_id

    def delivery_count(self, message: StreamMessage[Any]) -> int | None:
        return None  # Kafka does not count deliveries

    async def keep_alive(self, message: StreamMessage[Any]) -> None:
        """Nothing to do: the consumer's heartbeat runs on its own."""


async def _any_reachable(servers: Sequence[str], within: float = 2.0) -> None:
    errors = []
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            async with asyncio.timeout(within):
                _, writer = await asyncio.open_connection(host or "localhost", int(port or 9092))
        except (OSError, TimeoutError, ValueError) as error:
            errors.append(f"{server}: {error or type(error).__name__}")
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise ConnectionError("no Kafka bootstrap server is reachable (" + "; ".join(errors) + ")")


def build_transport(settings: MessagingSettings, telemetry: Telemetry | None) -> KafkaTransport:
    return KafkaTransport(settings, telemetry)
