"""RabbitMQ for the messaging tests: the running server, queues of each test's own.

Set ``TEST_RABBITMQ_URL`` to use another server. Every queue a test declares is deleted after
it. Outages are simulated with a TCP proxy between the service and the server (``outage``),
so the shared server keeps running.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika

from ..messaging.settings import MessagingSettings
from .proxy import TcpProxy
from .received import Received

URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
UNREACHABLE = (
    "RabbitMQ is not reachable at {url} ({error}). Start one: `rabbitmq-server -detached`, or "
    "`docker compose --profile rabbitmq up -d` in the template's stack; or point "
    "TEST_RABBITMQ_URL at another server."
)


@dataclass
class RabbitBroker:
    system = "rabbitmq"  # messaging.system on spans
    concurrent = True  # handles several messages at once
    url: str

    def settings(self, **overrides: object) -> MessagingSettings:
        """Settings with queues of their own, so tests never see each other's messages."""
        unique = f"test-{uuid.uuid4().hex[:12]}"
        values: dict[str, object] = {
            "broker_url": self.url,
            "destination": f"{unique}.events",
            "dead_letter_destination": f"{unique}.events.dlq",
            "consumer_group": unique,
            "connect_wait_seconds": 5.0,
        }
        return MessagingSettings.model_validate({**values, **overrides})

    def via(self, proxy: TcpProxy) -> str:
        """This server's URL, through ``proxy``."""
        parts = urlsplit(self.url)
        netloc = parts.netloc.rsplit("@", 1)
        credentials = f"{netloc[0]}@" if len(netloc) == 2 else ""
        return parts._replace(netloc=f"{credentials}127.0.0.1:{proxy.port}").geturl()

    def proxy(self) -> TcpProxy:
        parts = urlsplit(self.url)
        return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)

    async def publish_raw(
        self, settings: MessagingSettings, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish bytes as another producer might: any body, any headers, or none."""
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            message = aio_pika.Message(
                body,
                headers=dict(headers) if headers else None,
                message_id=(headers or {}).get("message_id"),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            # Events travel through the destination's fanout exchange (messaging/rabbitmq.py).
            exchange = await channel.get_exchange(settings.destination, ensure=False)
            await exchange.publish(message, routing_key="", mandatory=True)

    async def dead_letters(
        self, settings: MessagingSettings, count: int, within: float = 10.0
    ) -> list[Received]:
        """The first ``count`` dead letters, put back unacked for anyone else."""
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(settings.dead_letter_destination, ensure=False)
            received: list[Received] = []
            taken = []
            deadline = time.monotonic() + within
            while len(received) < count and time.monotonic() < deadline:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                taken.append(message)
                headers = {k: str(v) for k, v in (message.headers or {}).items()}
                received.append(Received(message.body, headers))
            for message in taken:
                await message.nack(requeue=True)
            return received

    async def cleanup(self, settings: MessagingSettings) -> None:
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            group_queue = f"{settings.destination}.{settings.consumer_group}"
            for name in (group_queue, settings.dead_letter_destination):
                await channel.queue_delete(name)
            await channel.exchange_delete(settings.destination)


def _check_reachable(url: str) -> None:
    async def connect() -> None:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()

    try:
        asyncio.run(connect())
    except Exception as error:
        raise AssertionError(UNREACHABLE.format(url=url, error=error)) from None


def broker_under_test() -> Iterator[RabbitBroker]:
    _check_reachable(URL)
    yield RabbitBroker(URL)
