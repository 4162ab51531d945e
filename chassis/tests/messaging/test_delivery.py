"""Delivery guarantees against the real broker: retries, dead letters, duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from structlog.testing import capture_logs

from service_chassis.messaging.consumer import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    REASON_HEADER,
    SOURCE_HEADER,
)
from service_chassis.messaging.events import Event, NewEvent
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.metrics import Metrics
from service_chassis.testing.brokers import BrokerUnderTest
from tests.sample.settings import Settings

from .support.app import eventually, running_service

pytestmark = pytest.mark.integration


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_published_event_is_consumed_once(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
) -> None:
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        handled.append(event)

    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        response = await service.client.post("/events", json={"type": "greeting", "data": {"a": 1}})
        assert response.status_code == 202, response.text
        await eventually(lambda: len(handled) == 1, what="the event was handled")
        await asyncio.sleep(0.2)  # time for a wrong second delivery to show up
        metrics = await service.client.get("/metrics")
    assert [str(event.id) for event in handled] == [response.json()["id"]]
    assert handled[0].data == {"a": 1}
    assert "faststream_received_processed_messages_total" in metrics.text
    assert "faststream_published_messages_total" in metrics.text


async def test_handler_that_fails_twice_then_succeeds_is_processed_once(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    broker: BrokerUnderTest,
) -> None:
    attempts: list[str] = []
    effects: list[str] = []

    async def flaky(event: Event) -> None:
        attempts.append(str(event.id))
        if len(attempts) <= 2:
            raise ConnectionError("downstream hiccup")
        effects.append(str(event.id))

    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider, handler=flaky
    ) as service:
        response = await service.client.post("/events", json={"type": "flaky"})
        await eventually(lambda: len(effects) == 1, what="the third attempt succeeded")
        await asyncio.sleep(0.3)
        context = service.app.state.service
    assert effects == [response.json()["id"]]
    assert len(attempts) == 3
    assert (
        _sample(
            context.metrics,
            "messaging_dead_letters_total",
            destination=messaging_settings.destination,
            reason="exhausted",
        )
        == 0
    )
    assert await broker.dead_letters(messaging_settings, 1, within=0.5) == []


async def test_poison_message_is_dead_lettered_while_later_messages_flow(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    broker: BrokerUnderTest,
) -> None:
    handled: list[str] = []
    poison_attempts: list[float] = []

    async def handler(event: Event) -> None:
        if event.type == "poison":
            poison_attempts.append(asyncio.get_running_loop().time())
            raise ValueError("cannot handle this one")
        handled.append(event.type)

    settings = messaging_settings.model_copy(
        update={"retry_backoff_seconds": 0.3, "retry_backoff_max_seconds": 0.6}
    )
    async with running_service(
        make_settings(), settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        poison = Event.create(NewEvent(type="poison"))
        await service.messaging.publisher.publish(poison)
        for index in range(5):
            await service.messaging.publisher.publish(Event.create(NewEvent(type=f"ok-{index}")))
        await eventually(lambda: len(handled) == 5, what="the later messages were handled")
        if broker.concurrent:
            # They did not wait for the poison message's retries to run out. (Kafka hands
            # records to the consumer one at a time: they wait, for the bounded retries only.)
            assert len(poison_attempts) < 3
        letters = await broker.dead_letters(settings, 1)
        metrics = service.app.state.service.metrics
    assert len(poison_attempts) == 3  # max_attempts
    assert poison_attempts[2] - poison_attempts[1] >= poison_attempts[1] - poison_attempts[0]
    [letter] = letters
    assert Event.model_validate_json(letter.body).id == poison.id
    assert letter.headers[REASON_HEADER] == "exhausted"
    assert letter.headers[ATTEMPTS_HEADER] == "3"
    assert letter.headers[ERROR_HEADER] == "ValueError: cannot handle this one"
    assert letter.headers[SOURCE_HEADER] == settings.destination
    assert (
        _sample(
            metrics,
            "messaging_dead_letters_total",
            destination=settings.destination,
            reason="exhausted",
        )
        == 1
    )


async def test_invalid_body_goes_to_the_dead_letters_without_retries(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    broker: BrokerUnderTest,
) -> None:
    calls: list[Event] = []

    async def handler(event: Event) -> None:
        calls.append(event)

    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        with capture_logs() as logs:
            await broker.publish_raw(messaging_settings, b'{"type": "no id"}', {"x-from": "a"})
            await broker.publish_raw(messaging_settings, b"\xff not json at all", None)
            letters = await broker.dead_letters(messaging_settings, 2)
        metrics = service.app.state.service.metrics
    assert calls == []
    by_body = {letter.body: letter for letter in letters}  # Kafka may reorder partitions
    assert set(by_body) == {b'{"type": "no id"}', b"\xff not json at all"}
    assert all(letter.headers[REASON_HEADER] == "invalid" for letter in letters)
    assert all(letter.headers[ATTEMPTS_HEADER] == "0" for letter in letters)
    missing_id = by_body[b'{"type": "no id"}']
    assert "id: Field required" in missing_id.headers[ERROR_HEADER]
    assert missing_id.headers["x-from"] == "a"  # the original headers travel along
    rejected = [line for line in logs if line["event"].startswith("message body is not a valid")]
    assert len(rejected) == 2
    assert rejected[0]["log_level"] == "error"
    assert (
        _sample(
            metrics,
            "messaging_dead_letters_total",
            destination=messaging_settings.destination,
            reason="invalid",
        )
        == 2
    )


async def test_redelivered_message_has_no_second_effect(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    broker: BrokerUnderTest,
) -> None:
    effects: list[str] = []

    async def handler(event: Event) -> None:
        effects.append(str(event.id))

    event = Event.create(NewEvent(type="once"))
    headers = {"message_id": str(event.id), "content-type": "application/json"}
    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        # The same message twice, as the broker redelivers it when an ack is lost.
        await broker.publish_raw(messaging_settings, event.to_bytes(), headers)
        await eventually(lambda: len(effects) == 1, what="the first copy was handled")
        await broker.publish_raw(messaging_settings, event.to_bytes(), headers)
        metrics = service.app.state.service.metrics
        await eventually(
            lambda: (
                _sample(
                    metrics,
                    "messaging_duplicates_total",
                    destination=messaging_settings.destination,
                )
                == 1
            ),
            what="the copy was counted as a duplicate",
        )
    assert effects == [str(event.id)]
