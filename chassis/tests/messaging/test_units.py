"""The broker-independent parts on their own: settings, backoff, idempotency, redaction."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from service_chassis.messaging.component import BrokerComponent, redact
from service_chassis.messaging.consumer import RetryPolicy
from service_chassis.messaging.idempotency import InMemoryIdempotencyStore
from service_chassis.messaging.settings import MessagingSettings
from tests.sample import SERVICE_NAME
from tests.sample.app import create_app
from tests.sample.settings import Settings


def test_destinations_are_named_after_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BROKER_URL", "MESSAGING_DESTINATION", "MESSAGING_CONSUMER_GROUP"):
        monkeypatch.delenv(name, raising=False)
    settings = MessagingSettings.for_service(SERVICE_NAME)
    assert settings.destination == f"{SERVICE_NAME}.events"
    assert settings.dead_letter_destination == f"{SERVICE_NAME}.events.dlq"
    assert settings.consumer_group == SERVICE_NAME
    assert settings.broker_url is None  # the broker module's local default applies


def test_names_set_in_the_environment_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSAGING_DESTINATION", "orders.placed")
    settings = MessagingSettings.for_service(SERVICE_NAME)
    assert settings.destination == "orders.placed"
    assert settings.consumer_group == SERVICE_NAME


def test_unprefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", "broker.internal:1234")
    monkeypatch.setenv("MESSAGING_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("MESSAGING_CONCURRENCY", "3")
    monkeypatch.setenv("MESSAGING_DRAIN_SECONDS", "2.5")
    settings = MessagingSettings()
    assert settings.broker_url == "broker.internal:1234"
    assert (settings.max_attempts, settings.concurrency, settings.drain_seconds) == (7, 3, 2.5)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 10])
def test_backoff_doubles_up_to_the_cap_with_half_of_it_jittered(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=4.0)
    ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
    assert policy.delay(attempt, rand=lambda: 0.0) == ceiling / 2
    assert policy.delay(attempt, rand=lambda: 1.0) == ceiling


async def test_a_claimed_id_is_refused_until_released_and_after_completion() -> None:
    store = InMemoryIdempotencyStore()
    assert await store.claim("a")
    assert not await store.claim("a")  # in flight elsewhere
    await store.release("a")
    assert await store.claim("a")  # the failed attempt left no effect
    await store.complete("a")
    assert not await store.claim("a")  # done: a redelivery is a duplicate


async def test_the_store_forgets_the_oldest_ids_beyond_its_capacity() -> None:
    store = InMemoryIdempotencyStore(capacity=2)
    for message_id in ("a", "b", "c"):
        assert await store.claim(message_id)
        await store.complete(message_id)
    assert len(store) == 2
    assert await store.claim("a")
    assert not await store.claim("c")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:secret@rabbit:5672/vhost", "amqp://rabbit:5672/vhost"),
        ("nats://user:pw@nats:4222", "nats://nats:4222"),
        ("nats://nats:4222", "nats://nats:4222"),
        ("kafka-1:9092,kafka-2:9092", "kafka-1:9092,kafka-2:9092"),
    ],
)
def test_logged_urls_carry_no_credentials(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_messaging_off_installs_nothing(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
) -> None:
    monkeypatch.setenv("MESSAGING_ENABLED", "false")
    app = create_app(make_settings(), tracer_provider=tracer_provider)
    assert app.state.messaging is None
    assert not any(isinstance(c, BrokerComponent) for c in app.state.service.components)
    assert not any(c.name.endswith(":connection") for c in app.state.service.health.checks)


def test_messaging_on_wires_the_broker_its_check_and_the_endpoint(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    tracer_provider: TracerProvider,
) -> None:
    monkeypatch.setenv("MESSAGING_ENABLED", "true")
    app = create_app(make_settings(), tracer_provider=tracer_provider)
    context = app.state.service
    system = app.state.messaging.transport.system
    [broker] = [c for c in context.components if isinstance(c, BrokerComponent)]
    assert broker.name == f"{system} broker"
    [check] = [c for c in context.health.checks if c.name == f"{system}:connection"]
    assert check.component_type == "datastore"
    assert "/events" in _paths(app)


def _paths(app: FastAPI) -> set[str]:
    return set(app.openapi()["paths"])
