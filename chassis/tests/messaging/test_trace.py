"""One trace from the HTTP request through the broker to what the consumer does."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from service_chassis.logs import configure_logging
from service_chassis.messaging import Messaging
from service_chassis.messaging.events import Event, NewEvent
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.messaging.telemetry import SEND_OPERATION
from service_chassis.testing.brokers import BrokerUnderTest
from service_chassis.testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from service_chassis.testing.servers import RecordingDownstream, eventually
from service_chassis.tracing import build_tracer_provider
from tests.sample.settings import Settings

from .support.app import running_service

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


def _operation(spans: list[ReceivedSpan], operation_type: str) -> ReceivedSpan:
    [span] = [s for s in spans if s.attributes.get("messaging.operation.type") == operation_type]
    return span


def _is_process(span: ReadableSpan) -> bool:
    return (span.attributes or {}).get("messaging.operation.type") == "process"


def _ancestors(span: ReceivedSpan, spans: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain = []
    while span.parent_span_id in spans:
        span = spans[span.parent_span_id]
        chain.append(span)
    return chain


# As a caller sends it: a property on k2, a percent-encoded space in k3.
BAGGAGE = "k1=v1,k2=v2;prop,k3=a%20b"


async def test_http_publish_consume_and_outbound_call_share_one_trace(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    otlp_receiver: OtlpReceiver,
    downstream: RecordingDownstream,
    broker: BrokerUnderTest,
) -> None:
    """Spans cross the wire twice: in message headers, then over OTLP to a real receiver.
    They follow the current messaging conventions, and the caller's baggage reaches the
    consumer's outbound call exactly as it was sent, its allowed keys on every span."""
    settings = make_settings(
        otel_traces_exporter="otlp",
        otel_exporter_otlp_endpoint=otlp_receiver.http_endpoint,
        downstream_url=downstream.url,
        baggage_attributes="k1,k3",
    )
    provider = build_tracer_provider(settings)
    log = io.StringIO()
    configure_logging(service="sample", level="INFO", stream=log, baggage_keys=("k1", "k3"))
    async with running_service(settings, messaging_settings, tracer_provider=provider) as service:
        response = await service.client.post(
            "/events",
            json={"type": "order.placed"},
            headers={"traceparent": INCOMING, "baggage": BAGGAGE},
        )
        assert response.status_code == 202, response.text
        await eventually(lambda: len(downstream.requests) == 1, what="the downstream was called")

        def process_span_exported() -> bool:
            provider.force_flush()
            operations = (s.attributes.get("messaging.operation.type") for s in otlp_receiver.spans)
            return "process" in operations

        await eventually(process_span_exported, what="the process span was exported")
    provider.shutdown()

    spans = [s for s in otlp_receiver.spans if s.trace_id == TRACE_ID]
    by_id = _by_id(spans)
    [server] = [s for s in spans if s.name == "POST /events"]
    send = _operation(spans, "send")
    process = _operation(spans, "process")
    [outbound] = [s for s in spans if s.kind == SpanKind.CLIENT.value + 1]  # OTLP counts from 1
    assert server.kind == SpanKind.SERVER.value + 1
    assert send.kind == SpanKind.PRODUCER.value + 1
    assert process.kind == SpanKind.CONSUMER.value + 1
    # One span per message on each side, named "<operation> <destination>".
    destination = messaging_settings.destination
    operation = SEND_OPERATION[broker.system]
    assert send.name == f"{operation} {destination}"
    assert process.name == f"process {destination}"
    assert len([s for s in spans if s.kind == SpanKind.PRODUCER.value + 1]) == 1
    event_id = response.json()["id"]
    assert send.attributes == {
        "messaging.system": broker.system,
        "messaging.operation.type": "send",
        "messaging.operation.name": operation,
        "messaging.destination.name": destination,
        "messaging.message.id": event_id,
        "k1": "v1",
        "k3": "a b",
    }
    assert process.attributes["messaging.system"] == broker.system
    assert process.attributes["messaging.operation.name"] == "process"
    assert process.attributes["messaging.destination.name"] == destination
    assert process.attributes["messaging.message.id"] == event_id
    if broker.system in ("nats", "kafka"):  # the brokers with consumer groups
        group = messaging_settings.consumer_group
        assert process.attributes["messaging.consumer.group.name"] == group
    else:
        assert "messaging.consumer.group.name" not in process.attributes
    # A child of the message's context (one trace), and linked to it as the conventions ask.
    assert process.parent_span_id == send.span_id
    assert process.links == ((TRACE_ID, send.span_id),)
    assert server in _ancestors(send, by_id)
    # The resilient client's logical call span ("downstream GET") sits between the two.
    call = by_id[outbound.parent_span_id]
    assert call.name == "downstream GET"
    assert call.parent_span_id == process.span_id
    # The allowed baggage keys on the spans of both sides, the others not.
    for span in (server, send, process, call, outbound):
        assert span.attributes["k1"] == "v1", span.name
        assert span.attributes["k3"] == "a b", span.name
        assert "k2" not in span.attributes
    sent = downstream.requests[0]
    assert sent["traceparent"].split("-")[1] == TRACE_ID
    assert sent["traceparent"].split("-")[2] == outbound.span_id
    # Through HTTP, the broker and HTTP again: the baggage as the caller sent it.
    assert sent["baggage"] == BAGGAGE
    assert sent["idempotency-key"] == event_id
    # The consumer's log lines carry the allowed keys too.
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    [handled] = [line for line in lines if line["event"] == "event handled"]
    assert (handled["k1"], handled["k3"]) == ("v1", "a b")
    assert "k2" not in handled
    [access] = [line for line in lines if line["event"] == "request"]
    assert (access["k1"], access["k3"]) == ("v1", "a b")


async def test_a_failed_send_records_the_error_class_only(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    broker: BrokerUnderTest,
) -> None:
    """Sent-message metrics and the send span on the same conventions, failure included."""
    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider
    ) as service:
        assert (await service.client.post("/events", json={"type": "ok"})).status_code == 202
        # Refused by each broker: unroutable on RabbitMQ (mandatory publish), over the
        # largest message on NATS and Kafka.
        if broker.system == "rabbitmq":
            destination, body = "no.such.queue", b"{}"
        else:
            destination, body = messaging_settings.destination, b"x" * 2_000_000
        with pytest.raises(Exception) as raised:  # noqa: PT011 - each client has its own
            await service.messaging.transport.publish(
                body, destination=destination, message_id="m-1", headers={}
            )
        metrics = (await service.client.get("/metrics")).text
    error_type = type(raised.value).__qualname__
    [failed] = [
        s for s in span_exporter.get_finished_spans() if (s.attributes or {}).get("error.type")
    ]
    assert failed.kind == SpanKind.PRODUCER
    assert failed.status.status_code == StatusCode.ERROR
    assert not failed.status.description
    assert not failed.events
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }

    def sent(destination_name: str, error: str, name: str) -> float | None:
        labels = {
            "messaging_system": broker.system,
            "messaging_operation_name": SEND_OPERATION[broker.system],
            "messaging_destination_name": destination_name,
            "error_type": error,
        }
        return samples.get((name, tuple(sorted(labels.items()))))

    total = "messaging_client_sent_messages_total"
    duration = "messaging_client_operation_duration_seconds_count"
    assert sent(messaging_settings.destination, "", total) == 1
    assert sent(messaging_settings.destination, "", duration) == 1
    assert sent(destination, error_type, total) == 1
    assert sent(destination, error_type, duration) == 1


@pytest.mark.parametrize(
    "headers",
    [None, {"traceparent": "00-not-a-trace-context-01"}],
    ids=["no headers", "malformed traceparent"],
)
async def test_message_without_usable_context_starts_a_new_trace(
    headers: dict[str, str] | None,
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    broker: BrokerUnderTest,
) -> None:
    seen: list[trace.SpanContext] = []

    async def handler(event: Event) -> None:
        seen.append(trace.get_current_span().get_span_context())

    event = Event.create(NewEvent(type="from.elsewhere"))
    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider, handler=handler
    ):
        await broker.publish_raw(messaging_settings, event.to_bytes(), headers)
        await eventually(lambda: len(seen) == 1, what="the message was processed")
    assert seen[0].is_valid
    spans = span_exporter.get_finished_spans()
    [process] = [s for s in spans if _is_process(s)]
    assert process.context is not None
    assert process.context.trace_id == seen[0].trace_id
    # A new trace: the process span is its root, with no link to anything.
    assert process.parent is None
    assert not process.links


async def test_a_publish_inside_the_handler_stays_in_the_trace(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    holder: list[Messaging] = []
    handled: list[str] = []

    async def handler(event: Event) -> None:
        handled.append(event.type)
        if event.type == "first":
            await holder[0].publisher.publish(Event.create(NewEvent(type="second")))

    async with running_service(
        make_settings(), messaging_settings, tracer_provider=tracer_provider, handler=handler
    ) as service:
        holder.append(service.messaging)
        response = await service.client.post("/events", json={"type": "first"})
        assert response.status_code == 202
        await eventually(lambda: handled == ["first", "second"], what="both were handled")

    spans = span_exporter.get_finished_spans()
    by_id: dict[int, ReadableSpan] = {s.context.span_id: s for s in spans if s.context}
    processes = [s for s in spans if _is_process(s)]
    assert len(processes) == 2
    assert len({s.context.trace_id for s in spans if s.context}) == 1
    first, second = sorted(processes, key=lambda s: s.start_time or 0)
    chain = []
    span: ReadableSpan | None = second
    while span is not None and span.parent is not None:
        span = by_id.get(span.parent.span_id)
        chain.append(span)
    assert first in chain
