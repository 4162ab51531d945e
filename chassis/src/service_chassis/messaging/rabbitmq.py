"""RabbitMQ: a fanout exchange per destination, a durable quorum queue per consumer group,
publisher confirms, manual acks after handling.

Events are published to a durable fanout exchange named after the destination. Each consumer
group (``MESSAGING_CONSUMER_GROUP``, the service's name by default) has its own queue,
``<destination>.<group>``, bound to it: every service that consumes the events gets all of
them, and the replicas of one service share its queue, as with NATS durable consumers and
Kafka consumer groups. Dead letters go to a queue of their own through the default exchange.
Quorum queues are replicated and count deliveries (``x-delivery-count``); publishes are
persistent, mandatory (an unroutable message is an error, not a silent drop) and confirmed by
the broker before ``POST /events`` answers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aio_pika
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas import Channel

from .settings import MessagingSettings
from .transport import (
    BrokerLifecycle,
    Consume,
    Telemetry,
    broker_logger,
    route_client_faults,
    subscriber_function,
    whole_message,
)

# The client libraries' own lines that are routine while the broker is away.
CLIENT_ROUTINE = {
    "aiormq.connection": ("error when creating transport", "Cancelling cause reader exited"),
    "aio_pika.robust_connection": ("Connection attempt to",),
    "aio_pika.tools": ("Callback <OneShotCallback",),
}

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DELIVERY_COUNT_HEADER = "x-delivery-count"


class RabbitTransport(BrokerLifecycle):
    broker: RabbitBroker
    system = "rabbitmq"

    def __init__(self, settings: MessagingSettings, telemetry: Telemetry | None) -> None:
        self.url = settings.broker_url or DEFAULT_URL
        self._settings = settings
        self.exchange = RabbitExchange(settings.destination, type=ExchangeType.FANOUT, durable=True)
        self.queue = RabbitQueue(
            f"{settings.destination}.{settings.consumer_group}",
            queue_type=QueueType.QUORUM,
            durable=True,
        )
        if telemetry is not None:
            # RabbitMQ has no consumer groups in the conventions: the group's queue is the
            # subscription the messages come from.
            self.telemetry = telemetry.for_transport("rabbitmq", subscription=self.queue.name)
        self.dead_letter_queue = RabbitQueue(
            settings.dead_letter_destination, queue_type=QueueType.QUORUM, durable=True
        )
        self.broker = RabbitBroker(
            self.url,
            graceful_timeout=settings.drain_seconds,
            reconnect_interval=settings.reconnect_seconds,
            timeout=settings.publish_timeout_seconds,
            default_channel=Channel(
                prefetch_count=settings.concurrency,
                publisher_confirms=True,
                on_return_raises=True,
            ),
            logger=broker_logger("rabbitmq"),
            # FastStream's per-message "Received"/"Processed" lines only at DEBUG.
            log_level=logging.DEBUG,
            # The subscriber takes the whole message (see whole_message): no injection needed.
            apply_types=False,
        )
        # aiormq and aio-pika log every reconnect attempt, at ERROR and with tracebacks.
        route_client_faults("rabbitmq", CLIENT_ROUTINE)

    def subscribe(self, consume: Consume) -> None:
        subscriber = self.broker.subscriber(
            self.queue, self.exchange, ack_policy=AckPolicy.NACK_ON_ERROR, decoder=whole_message
        )
        subscriber(
            subscriber_function(
                consume,
                telemetry=self.telemetry,
                destination=self.exchange.name,
                message_id=self.message_id,
            )
        )

    async def start(self) -> None:
        await self.broker.connect()
        # Declared here too, not only by the subscriber: a publish needs somewhere to go.
        exchange = await self.broker.declare_exchange(self.exchange)
        queue = await self.broker.declare_queue(self.queue)
        await queue.bind(exchange)
        await self.broker.declare_queue(self.dead_letter_queue)
        await self.broker.start()

    async def _send(
        self, body: bytes, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None:
        amqp_headers: dict[str, Any] = {k: v for k, v in headers.items() if k != "content-type"}
        # Events go to the exchange (every group's queue); dead letters to their own queue.
        to_exchange = destination == self.exchange.name
        await self.broker.publish(
            body,
            exchange=self.exchange if to_exchange else None,
            queue="" if to_exchange else destination,
            persist=True,
            mandatory=True,
            message_id=message_id,
            content_type=headers.get("content-type"),
            headers=amqp_headers,
            timeout=self._settings.publish_timeout_seconds,
        )

    async def delete_destinations(self) -> None:
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            for queue in (self.queue, self.dead_letter_queue):
                await channel.queue_delete(queue.name)
            await channel.exchange_delete(self.exchange.name)

    def message_id(self, message: StreamMessage[Any]) -> str:
        return message.message_id

    def delivery_count(self, message: StreamMessage[Any]) -> int | None:
        # Quorum queues count earlier deliveries in this header, from the second one on.
        earlier = message.headers.get(DELIVERY_COUNT_HEADER)
        return int(earlier) + 1 if isinstance(earlier, int | str) else 1

    async def keep_alive(self, message: StreamMessage[Any]) -> None:
        """Nothing to do: RabbitMQ waits for the ack as long as the channel is open."""

    async def is_connected(self) -> bool:
        if not await super().is_connected():
            return False
        # After an outage the connection comes back before its channels are reopened; until
        # the publishing channel is, a publish fails (ChannelInvalidStateError): not ready.
        channel = self.broker._channel
        return channel is not None and not channel.is_closed


def build_transport(settings: MessagingSettings, telemetry: Telemetry | None) -> RabbitTransport:
    return RabbitTransport(settings, telemetry)
