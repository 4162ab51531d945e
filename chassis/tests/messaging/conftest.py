"""Every messaging test runs on each broker: NATS, RabbitMQ and Kafka, all real."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from service_chassis.messaging.settings import MessagingSettings
from service_chassis.testing.brokers import BrokerUnderTest, broker_under_test
from tests.sample.settings import Settings

from ..conftest import downstream_env

BROKERS = ("nats", "rabbitmq", "kafka")


@pytest.fixture(scope="session")
def nats_broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test("nats") as broker:
        yield broker


@pytest.fixture(scope="session")
def rabbitmq_broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test("rabbitmq") as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test("kafka") as broker:
        yield broker


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> BrokerUnderTest:
    found: BrokerUnderTest = request.getfixturevalue(f"{request.param}_broker")
    return found


@pytest.fixture
def make_settings(
    broker: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        defaults: dict[str, Any] = {
            "otel_traces_exporter": "none",
            "messaging_broker": broker.system,
        }
        return Settings(**{**defaults, **downstream_env(monkeypatch, overrides)})

    return make


@pytest.fixture
async def messaging_settings(broker: BrokerUnderTest) -> AsyncIterator[MessagingSettings]:
    settings = broker.settings(
        max_attempts=3, retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.2
    )
    yield settings
    await broker.cleanup(settings)
