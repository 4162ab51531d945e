"""Delivery guarantees against the real broker: retries, dead letters, duplicates."""

from __future__ import annotations

import asyncio
import contextlib
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
from service_chassis.testing.servers import eventually
from tests.sample.settings import Settings

from ..resilience.faults import Fault, run_faulty_downstream
from .support.app import running_service

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
    assert "messaging_client_sent_messages_total{" in metrics.text
    assert "messaging_process_duration_seconds_count{" in metrics.text
    assert "faststream_" not in metrics.text


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


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [
        (b'{"type": "t", "data": {"k": "\\ud800"}}', 422, "urn:problem:event-not-json"),
        (b'{"type": "t", "data": {"v": NaN}}', 422, "about:blank"),
        (
            b'{"type": "t", "data": {"blob": "' + b"x" * 950_000 + b'"}}',
            413,
            "urn:problem:event-too-large",
        ),
    ],
    ids=["lone-surrogate", "nan", "too-large-for-the-broker"],
)
async def test_an_event_that_can_never_be_published_is_a_4xx_not_a_503(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    body: bytes,
    status: int,
    type_: str,
) -> None:
    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider
    ) as service:
        await eventually(lambda: service.messaging.component.started, what="broker connected")
        response = await service.client.post(
            "/events", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in response.headers  # a retry cannot help
    assert response.json()["type"] == type_


async def test_a_downstream_outage_holds_messages_instead_of_dead_lettering_them(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    broker: BrokerUnderTest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The downstream answers 503 until it recovers: its breaker opens, and the consumer waits
    for it (no attempts spent) rather than sending good events to the dead letters."""
    with contextlib.contextmanager(run_faulty_downstream)() as faulty:
        faulty.script(*[Fault(status=503)] * 6)  # then healthy
        monkeypatch.setenv("DOWNSTREAM_URL", faulty.url)
        for name, value in {
            "RETRY_MAX_ATTEMPTS": "1",
            "BREAKER_MINIMUM_CALLS": "2",
            "BREAKER_OPEN_SECONDS": "1",
            "BREAKER_HALF_OPEN_CALLS": "1",
        }.items():
            monkeypatch.setenv(f"DOWNSTREAM_{name}", value)
        async with running_service(
            make_settings(), messaging_settings, tracer_provider=tracer_provider
        ) as service:
            events = [Event.create(NewEvent(type=f"e{n}")) for n in range(4)]
            for event in events:
                await service.messaging.publisher.publish(event)
            ids = {str(event.id) for event in events}

            def all_served() -> bool:
                with faulty.lock:
                    served = faulty.requests[6:]  # after the outage
                    return ids <= {seen.headers.get("idempotency-key") for seen in served}

            await eventually(all_served, within=20, what="every event reached the downstream")
            metrics = service.service.metrics.registry
        letters = await broker.dead_letters(messaging_settings, 1, within=0.5)
    assert letters == []
    waits = metrics.get_sample_value(
        "messaging_dependency_waits_total",
        {"destination": messaging_settings.destination, "downstream": "downstream"},
    )
    assert waits is not None
    assert waits >= 1


async def test_a_retried_publish_with_its_idempotency_key_is_one_event(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
) -> None:
    handled: list[str] = []

    async def handler(event: Event) -> None:
        handled.append(str(event.id))

    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        await eventually(lambda: service.messaging.component.started, what="broker connected")
        headers = {"idempotency-key": "order-42-placed"}
        answers = [
            await service.client.post("/events", json={"type": "order.placed"}, headers=headers)
            for _ in range(3)
        ]
        await eventually(lambda: len(handled) >= 1, what="the event was handled")
        await asyncio.sleep(0.5)  # room for a copy to turn up
    assert [a.status_code for a in answers] == [202] * 3
    assert len({a.json()["id"] for a in answers}) == 1
    assert handled == [answers[0].json()["id"]]
