"""One trace from the HTTP request through the broker to what the consumer does."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service_chassis.messaging import Messaging
from service_chassis.messaging.events import Event, NewEvent
from service_chassis.messaging.settings import MessagingSettings
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


def _operation(spans: list[ReceivedSpan], operation: str) -> ReceivedSpan:
    [span] = [s for s in spans if s.attributes.get("messaging.operation") == operation]
    return span


def _is_process(span: ReadableSpan) -> bool:
    return (span.attributes or {}).get("messaging.operation") == "process"


def _ancestors(span: ReceivedSpan, spans: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain = []
    while span.parent_span_id in spans:
        span = spans[span.parent_span_id]
        chain.append(span)
    return chain


async def test_http_publish_consume_and_outbound_call_share_one_trace(
    make_settings: Callable[..., Settings],
    messaging_settings: MessagingSettings,
    otlp_receiver: OtlpReceiver,
    downstream: RecordingDownstream,
    broker: BrokerUnderTest,
) -> None:
    """Spans cross the wire twice: in message headers, then over OTLP to a real receiver."""
    settings = make_settings(
        otel_traces_exporter="otlp",
        otel_exporter_otlp_endpoint=otlp_receiver.http_endpoint,
        downstream_url=downstream.url,
    )
    provider = build_tracer_provider(settings)
    async with running_service(settings, messaging_settings, tracer_provider=provider) as service:
        response = await service.client.post(
            "/events",
            json={"type": "order.placed"},
            headers={"traceparent": INCOMING, "baggage": "tenant=acme"},
        )
        assert response.status_code == 202, response.text
        await eventually(lambda: len(downstream.requests) == 1, what="the downstream was called")

        def process_span_exported() -> bool:
            provider.force_flush()
            operations = (s.attributes.get("messaging.operation") for s in otlp_receiver.spans)
            return "process" in operations

        await eventually(process_span_exported, what="the process span was exported")
    provider.shutdown()

    spans = [s for s in otlp_receiver.spans if s.trace_id == TRACE_ID]
    by_id = _by_id(spans)
    [server] = [s for s in spans if s.name == "POST /events"]
    publish = _operation(spans, "publish")
    process = _operation(spans, "process")
    [outbound] = [s for s in spans if s.kind == SpanKind.CLIENT.value + 1]  # OTLP counts from 1
    assert server.kind == SpanKind.SERVER.value + 1
    assert publish.kind == SpanKind.PRODUCER.value + 1
    assert process.kind == SpanKind.CONSUMER.value + 1
    assert server in _ancestors(publish, by_id)
    # The consumer continues the producer's trace as a child (not a link) of its create span,
    # which the publish span also descends from.
    assert process.parent_span_id in {a.span_id for a in _ancestors(publish, by_id)}
    assert server in _ancestors(process, by_id)
    # The resilient client's logical call span ("downstream GET") sits between the two.
    call = by_id[outbound.parent_span_id]
    assert call.name == "downstream GET"
    assert call.parent_span_id == process.span_id
    assert process.attributes["messaging.system"] == broker.system
    sent = downstream.requests[0]
    assert sent["traceparent"].split("-")[1] == TRACE_ID
    assert sent["traceparent"].split("-")[2] == outbound.span_id
    assert "tenant=acme" in sent["baggage"]
    assert sent["idempotency-key"] == response.json()["id"]


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
    # A new trace: the process span's parent is a local root span, nothing from the message.
    assert process.parent is not None
    assert not process.parent.is_remote
    [root] = [s for s in spans if s.context and s.context.span_id == process.parent.span_id]
    assert root.parent is None


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
