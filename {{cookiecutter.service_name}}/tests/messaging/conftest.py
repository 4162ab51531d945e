from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from {{ cookiecutter.__package_name }}.messaging.settings import MessagingSettings

from .support.{{ cookiecutter.messaging }} import BrokerUnderTest, broker_under_test


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerUnderTest]:
    yield from broker_under_test()


@pytest.fixture
async def messaging_settings(broker: BrokerUnderTest) -> AsyncIterator[MessagingSettings]:
    settings = broker.settings(
        max_attempts=3, retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.2
    )
    yield settings
    await broker.cleanup(settings)
