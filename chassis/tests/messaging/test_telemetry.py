"""A send and a processing as their spans and metrics record them, failures included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from service_chassis.messaging.telemetry import MessagingTelemetry
from service_chassis.propagation import install_propagators

DESTINATION = "orders.events"
SENDER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SENDER_SPAN = "00f067aa0ba902b7"


class Refused(Exception):
    pass


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def telemetry(
    exported: InMemorySpanExporter, registry: CollectorRegistry
) -> Iterator[MessagingTelemetry]:
    before = propagate.get_global_textmap()
    install_propagators()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    yield MessagingTelemetry(
        system="nats", tracer_provider=provider, registry=registry, consumer_group="shipping"
    )
    propagate.set_global_textmap(before)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"messaging_system": "nats", **labels})


def _only(exported: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exported.get_finished_spans()
    return span


def test_a_send_puts_its_context_in_the_headers_and_counts_the_message(
    telemetry: MessagingTelemetry, exported: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    headers = {"content-type": "application/json"}
    with telemetry.sending(DESTINATION, "m-1", headers):
        current = trace.get_current_span().get_span_context()
    span = _only(exported)
    assert span.context == current  # current while the send ran
    assert (span.name, span.kind) == (f"publish {DESTINATION}", SpanKind.PRODUCER)
    assert headers["traceparent"] == (
        f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}"
        f"-{span.context.trace_flags:02x}"
    )
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == "m-1"
    labels = {
        "messaging_operation_name": "publish",
        "messaging_destination_name": DESTINATION,
        "error_type": "",
    }
    assert _value(registry, "messaging_client_sent_messages_total", **labels) == 1
    assert _value(registry, "messaging_client_operation_duration_seconds_count", **labels) == 1
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached afterwards


def test_a_failed_send_records_its_error_class_and_raises(
    telemetry: MessagingTelemetry, exported: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    with pytest.raises(Refused), telemetry.sending(DESTINATION, "m-1", {}):
        raise Refused("secret detail")
    span = _only(exported)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "Refused"
    assert "secret detail" not in str(span.to_json())
    labels = {
        "messaging_operation_name": "publish",
        "messaging_destination_name": DESTINATION,
    }
    sent = "messaging_client_sent_messages_total"
    assert _value(registry, sent, **labels, error_type="Refused") == 1
    assert _value(registry, sent, **labels, error_type="") in (None, 0)


def test_a_processing_continues_the_senders_trace_with_its_baggage(
    telemetry: MessagingTelemetry, exported: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    headers = {
        "traceparent": f"00-{SENDER_TRACE}-{SENDER_SPAN}-01",
        "baggage": "k1=v1,k3=a%20b",
    }
    with telemetry.processing(DESTINATION, "m-1", headers):
        inside = baggage.get_all()
    span = _only(exported)
    assert inside == {"k1": "v1", "k3": "a b"}
    assert (span.name, span.kind) == (f"process {DESTINATION}", SpanKind.CONSUMER)
    assert span.parent is not None
    assert (f"{span.parent.trace_id:032x}", f"{span.parent.span_id:016x}") == (
        SENDER_TRACE,
        SENDER_SPAN,
    )
    assert [link.context for link in span.links] == [span.parent]
    labels = {
        "messaging_operation_name": "process",
        "messaging_destination_name": DESTINATION,
        "messaging_consumer_group_name": "shipping",
        "error_type": "",
    }
    assert _value(registry, "messaging_client_consumed_messages_total", **labels) == 1
    assert _value(registry, "messaging_process_duration_seconds_count", **labels) == 1


def test_a_failed_processing_is_consumed_and_timed_under_its_error_class(
    telemetry: MessagingTelemetry, exported: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    with pytest.raises(Refused), telemetry.processing(DESTINATION, "m-1", {}):
        raise Refused
    span = _only(exported)
    assert span.parent is None  # no context in the headers: a new trace
    assert not span.links
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "Refused"
    labels = {
        "messaging_operation_name": "process",
        "messaging_destination_name": DESTINATION,
        "messaging_consumer_group_name": "shipping",
    }
    consumed = "messaging_client_consumed_messages_total"
    duration = "messaging_process_duration_seconds_count"
    assert _value(registry, consumed, **labels, error_type="") == 1
    assert _value(registry, duration, **labels, error_type="Refused") == 1
    assert _value(registry, duration, **labels, error_type="") in (None, 0)
