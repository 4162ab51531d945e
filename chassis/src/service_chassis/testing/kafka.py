"""Kafka for the messaging tests: librdkafka's mock cluster, from the confluent-kafka wheel.

A confluent-kafka producer configured with ``test.mock.num.brokers`` starts an in-process
broker that speaks the Kafka wire protocol on a loopback port; the service's aiokafka clients
produce (``acks=all``, idempotent), join a consumer group and commit against it as they would
against Kafka. It is not Kafka: no replication, no log compaction, no real ISR, and topic
creation through the admin API is not supported (topics are created on first use).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import confluent_kafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

from ..messaging.settings import MessagingSettings
from .received import Received


@dataclass
class KafkaBroker:
    system = "kafka"  # messaging.system on spans
    concurrent = False  # handles several messages at once
    url: str

    def settings(self, **overrides: object) -> MessagingSettings:
        """Settings with topics of their own, so tests never see each other's messages."""
        unique = f"test-{uuid.uuid4().hex[:12]}"
        values: dict[str, object] = {
            "broker_url": self.url,
            "destination": f"{unique}.events",
            "dead_letter_destination": f"{unique}.events.dlq",
            "consumer_group": unique,
            "connect_wait_seconds": 5.0,
        }
        return MessagingSettings.model_validate({**values, **overrides})

    async def publish_raw(
        self, settings: MessagingSettings, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish bytes as another producer might: any body, any headers, or none."""
        producer = AIOKafkaProducer(bootstrap_servers=self.url, acks="all")
        await producer.start()
        try:
            record_headers = [(k, v.encode()) for k, v in (headers or {}).items()]
            await producer.send_and_wait(settings.destination, body, headers=record_headers)
        finally:
            await producer.stop()

    async def dead_letters(
        self, settings: MessagingSettings, count: int, within: float = 10.0
    ) -> list[Received]:
        """The first ``count`` dead letters, read outside any consumer group."""
        consumer = AIOKafkaConsumer(
            settings.dead_letter_destination,
            bootstrap_servers=self.url,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            received: list[Received] = []
            deadline = time.monotonic() + within
            while len(received) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    received += [
                        Received(r.value or b"", {k: v.decode() for k, v in r.headers})
                        for r in records
                    ]
            return received[:count]
        finally:
            await consumer.stop()

    async def cleanup(self, settings: MessagingSettings) -> None:
        """Nothing to do: the mock cluster lives as long as the test session."""


def broker_under_test() -> Iterator[KafkaBroker]:
    # The cluster runs inside this producer's librdkafka instance, for as long as it lives.
    cluster = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    [node] = cluster.list_topics(timeout=10).brokers.values()
    yield KafkaBroker(f"{node.host}:{node.port}")
    cluster.flush(5)
