"""NATS JetStream: a durable stream and a durable pull consumer with explicit acks.

The events subject lives in a stream named after it, the dead letters in a stream of their
own (kept apart so that JetStream's duplicate window, keyed by ``Nats-Msg-Id`` per stream,
does not take a dead letter for a copy of its event). Publishing waits for JetStream's ack:
the message is stored before ``POST /events`` answers.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from typing import Any

import structlog
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

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

log = structlog.get_logger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"

# How long one pull request waits for messages; bounds how soon a stop is noticed.
FETCH_TIMEOUT = 1.0


def stream_name(subject: str) -> str:
    """A stream name for a subject: stream names may not contain '.', '*', '>' or spaces."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper()


class NatsTransport(BrokerLifecycle):
    broker: NatsBroker
    system = "nats"

    def __init__(self, settings: MessagingSettings, telemetry: Telemetry | None) -> None:
        self.url = settings.broker_url or DEFAULT_URL
        self._settings = settings
        if telemetry is not None:
            # A durable pull consumer is NATS's consumer group.
            self.telemetry = telemetry.for_transport("nats", consumer_group=settings.consumer_group)
        self.events_stream = JStream(
            name=stream_name(settings.destination), subjects=[settings.destination]
        )
        self.dead_letter_stream = JStream(
            name=stream_name(settings.dead_letter_destination),
            subjects=[settings.dead_letter_destination],
        )
        self._streams = {
            settings.destination: self.events_stream.name,
            settings.dead_letter_destination: self.dead_letter_stream.name,
        }
        self.broker = NatsBroker(
            self.url,
            graceful_timeout=settings.drain_seconds,
            # Reconnect for ever: an outage of any length ends when the server is back.
            max_reconnect_attempts=-1,
            reconnect_time_wait=max(1, round(settings.reconnect_seconds)),
            connect_timeout=2,
            # No reconnect buffer: a publish while the server is away fails at once (503)
            # instead of waiting out its timeout and being delivered later all the same, so
            # an error answer always means "not published".
            pending_size=0,
            logger=broker_logger("nats"),
            # FastStream's per-message "Received"/"Processed" lines only at DEBUG.
            log_level=logging.DEBUG,
            # The subscriber takes the whole message (see whole_message): no injection needed.
            apply_types=False,
        )

    def subscribe(self, consume: Consume) -> None:
        settings = self._settings
        subscriber = self.broker.subscriber(
            settings.destination,
            stream=self.events_stream,
            durable=settings.consumer_group,
            pull_sub=PullSub(batch_size=settings.concurrency, timeout=FETCH_TIMEOUT),
            max_workers=settings.concurrency,
            config=ConsumerConfig(
                durable_name=settings.consumer_group,
                ack_policy=JsAckPolicy.EXPLICIT,
                ack_wait=settings.ack_wait_seconds,
                deliver_policy=DeliverPolicy.ALL,
                # The consumer dead-letters; JetStream must never give up on a message.
                max_deliver=-1,
            ),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=whole_message,
        )
        subscriber(
            subscriber_function(
                consume,
                telemetry=self.telemetry,
                destination=settings.destination,
                message_id=self.message_id,
            )
        )

    async def start(self) -> None:
        await self.broker.connect()
        # Declared here too, not only by the subscriber: a publish needs its stream.
        jetstream = self.broker.connection.jetstream()
        for stream, subject in (
            (self.events_stream, self._settings.destination),
            (self.dead_letter_stream, self._settings.dead_letter_destination),
        ):
            try:
                await jetstream.add_stream(stream.config, subjects=[subject])
            except BadRequestError as error:  # it exists, configured by someone else
                log.warning(
                    "using the existing stream as it is", stream=stream.name, error=str(error)
                )
        await self.broker.start()

    async def _send(
        self, body: bytes, destination: str, message_id: str, headers: Mapping[str, str]
    ) -> None:
        await self.broker.publish(
            body,
            destination,
            # Nats-Msg-Id: JetStream drops a copy published again within its duplicate window.
            headers={**headers, MESSAGE_ID_HEADER: message_id, "Nats-Msg-Id": message_id},
            stream=self._streams.get(destination),
            timeout=self._settings.publish_timeout_seconds,
        )

    async def delete_destinations(self) -> None:
        jetstream = self.broker.connection.jetstream()
        for stream in (self.events_stream, self.dead_letter_stream):
            with contextlib.suppress(NotFoundError):
                await jetstream.delete_stream(stream.name)

    def message_id(self, message: StreamMessage[Any]) -> str:
        return header(message, MESSAGE_ID_HEADER) or message.message_id

    def delivery_count(self, message: StreamMessage[Any]) -> int | None:
        raw = message.raw_message
        if isinstance(raw, Msg):
            return raw.metadata.num_delivered
        return None

    async def keep_alive(self, message: StreamMessage[Any]) -> None:
        raw = message.raw_message
        if isinstance(raw, Msg) and raw.reply:  # a JetStream delivery, not a test double
            await raw.in_progress()


def build_transport(settings: MessagingSettings, telemetry: Telemetry | None) -> NatsTransport:
    return NatsTransport(settings, telemetry)
