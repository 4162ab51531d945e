"""Spans and metrics of sending and processing messages, on OpenTelemetry's current messaging
conventions (semantic-conventions v1.37.0: docs/messaging/messaging-spans.md and
messaging-metrics.md).

- Sending: a PRODUCER span ``<operation> <destination>`` (``publish`` on NATS and RabbitMQ,
  ``send`` on Kafka, as each system's page names it), with ``messaging.operation.type=send``
  and ``messaging.message.id``. Its context travels in the message's headers (W3C
  ``traceparent``/``tracestate``), with the active baggage.
- Processing: a CONSUMER span ``process <destination>``, a child of the message's context (so
  Jaeger shows one trace from the HTTP request through the broker) and linked to it, as the
  conventions ask of every process span. The message's baggage is active while it runs.
- Metrics: ``messaging.client.sent.messages``, ``messaging.client.operation.duration`` (send),
  ``messaging.client.consumed.messages`` and ``messaging.process.duration``, in Prometheus
  spelling, on the service's registry, with trace exemplars.

This replaces FastStream's telemetry middleware, which emits the conventions of v1.24 (an
extra ``create`` span per message, ``messaging.destination_publish.name`` on consumers) and
costs about 100 us per message even when the trace is not sampled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, StatusCode, TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram

from ..metrics import DURATION_BUCKETS, observe, span_exemplar
from ..propagation import extract, inject
from ..tracing import chassis_tracer

# messaging.operation.name of a send, per system (semconv's NATS has no page: "publish").
SEND_OPERATION = {"nats": "publish", "rabbitmq": "publish", "kafka": "send"}
PROCESS_OPERATION = "process"

SENT_LABELS = (
    "messaging_system",
    "messaging_operation_name",
    "messaging_destination_name",
    "error_type",
)
CONSUMED_LABELS = (*SENT_LABELS[:3], "messaging_consumer_group_name", "error_type")


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Message headers as the propagators read them: any case of name, bytes or text."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode("latin-1") if isinstance(value, bytes) else str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


HEADERS = _HeaderGetter()


class MessagingInstruments:
    """The four metrics, on one registry (shared by every transport of the service)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "messaging_client_sent_messages",
            "Messages a producer attempted to send (messaging.client.sent.messages).",
            SENT_LABELS,
            registry=registry,
        )
        self.send_duration = Histogram(
            "messaging_client_operation_duration_seconds",
            "Duration of send operations, until the broker confirmed "
            "(messaging.client.operation.duration).",
            SENT_LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.consumed = Counter(
            "messaging_client_consumed_messages",
            "Messages delivered to the consumer (messaging.client.consumed.messages).",
            CONSUMED_LABELS,
            registry=registry,
        )
        self.process_duration = Histogram(
            "messaging_process_duration_seconds",
            "Duration of processing one message, handler and retries included "
            "(messaging.process.duration).",
            CONSUMED_LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )


_instruments: dict[int, tuple[CollectorRegistry, MessagingInstruments]] = {}


def instruments_for(registry: CollectorRegistry) -> MessagingInstruments:
    """One set per registry: a producer and a consumer transport may share it."""
    found = _instruments.get(id(registry))
    if found is None or found[0] is not registry:
        found = (registry, MessagingInstruments(registry))
        _instruments[id(registry)] = found
    return found[1]


@dataclass(frozen=True, slots=True)
class _Route:
    """What every message to or from one destination shares, worked out once: the span's
    name and attributes (but the message id), the label children of a success, and those of
    a failure by error type."""

    span_name: str
    attributes: dict[str, str]
    count: Any
    duration: Any
    failed: Callable[[str], tuple[Any, Any]]


class Operation:
    """One send or one processing, from ``with`` to its end: its span is current meanwhile.
    On the way out it counts the message, records its duration with the trace as exemplar,
    marks the span with the error's class if one was raised (and lets it propagate), and
    ends the span."""

    __slots__ = ("_route", "_span", "_started", "_token")

    def __init__(self, route: _Route, span: trace.Span, context: otel_context.Context) -> None:
        self._route = route
        self._span = span
        self._token = otel_context.attach(context)
        self._started = time.perf_counter()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        span = self._span
        try:
            if error is None:
                count, duration = self._route.count, self._route.duration
            else:
                # The class only: an exception's message may carry data that must not be
                # exported.
                error_type = type(error).__qualname__
                count, duration = self._route.failed(error_type)
                span.set_attribute("error.type", error_type)
                span.set_status(StatusCode.ERROR)
            count._value.inc(1)  # count.inc(1) less its checks, as observe() skips them
            observe(duration, elapsed, span_exemplar(span.get_span_context()))
            span.end()
        finally:
            otel_context.detach(self._token)


class MessagingTelemetry:
    """One transport's spans and metrics: ``with sending(...)`` around a publish, ``with
    processing(...)`` around handling a delivery."""

    def __init__(
        self,
        *,
        system: str,
        tracer_provider: TracerProvider,
        registry: CollectorRegistry,
        consumer_group: str | None = None,
        subscription: str | None = None,
    ) -> None:
        self.system = system
        # One span per message on each side: the lean path (lean_spans.py).
        self._tracer = chassis_tracer(tracer_provider, "service_chassis.messaging")
        self._instruments = instruments_for(registry)
        self._send_operation = SEND_OPERATION.get(system, "send")
        self._group = consumer_group or ""
        self._consumer_attributes: dict[str, str] = {
            "messaging.system": system,
            "messaging.operation.type": "process",
            "messaging.operation.name": PROCESS_OPERATION,
        }
        if consumer_group:
            self._consumer_attributes["messaging.consumer.group.name"] = consumer_group
        if subscription:
            self._consumer_attributes["messaging.destination.subscription.name"] = subscription
        # Label lookups validate and lock: routes and the few failure labels are cached.
        self._sending: dict[str, _Route] = {}
        self._processing: dict[str, _Route] = {}
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def sending(
        self, destination: str, message_id: str, headers: MutableMapping[str, str]
    ) -> Operation:
        """A PRODUCER span for one send, its context (and the baggage) put in ``headers``."""
        route = self._sending.get(destination) or self._sending_to(destination)
        span = self._tracer.start_span(
            route.span_name,
            kind=SpanKind.PRODUCER,
            attributes={**route.attributes, "messaging.message.id": message_id},
        )
        context = trace.set_span_in_context(span)
        inject(headers, context, span.get_span_context())
        return Operation(route, span, context)

    def processing(
        self, destination: str, message_id: str, headers: Mapping[str, Any]
    ) -> Operation:
        """A CONSUMER span for processing one delivery, child of the message's context and
        linked to it, with the message's baggage."""
        route = self._processing.get(destination) or self._processing_from(destination)
        extracted = extract(headers, HEADERS)
        sender = trace.get_current_span(extracted).get_span_context()
        links: Sequence[Link] = (Link(sender),) if sender.is_valid else ()
        span = self._tracer.start_span(
            route.span_name,
            extracted,
            SpanKind.CONSUMER,
            {**route.attributes, "messaging.message.id": message_id},
            links,
        )
        return Operation(route, span, trace.set_span_in_context(span, extracted))

    def _sending_to(self, destination: str) -> _Route:
        instruments, operation = self._instruments, self._send_operation

        def failed(error_type: str) -> tuple[Any, Any]:
            labels = (self.system, operation, destination, error_type)
            return (
                self._child(instruments.sent, *labels),
                self._child(instruments.send_duration, *labels),
            )

        count, duration = failed("")
        route = self._sending[destination] = _Route(
            span_name=f"{operation} {destination}",
            attributes={
                "messaging.system": self.system,
                "messaging.operation.type": "send",
                "messaging.operation.name": operation,
                "messaging.destination.name": destination,
            },
            count=count,
            duration=duration,
            failed=failed,
        )
        return route

    def _processing_from(self, destination: str) -> _Route:
        instruments = self._instruments
        labels = (self.system, PROCESS_OPERATION, destination, self._group)
        # Consumed counts deliveries, whatever became of them: no error type.
        consumed = self._child(instruments.consumed, *labels, "")

        def failed(error_type: str) -> tuple[Any, Any]:
            return consumed, self._child(instruments.process_duration, *labels, error_type)

        route = self._processing[destination] = _Route(
            span_name=f"{PROCESS_OPERATION} {destination}",
            attributes={**self._consumer_attributes, "messaging.destination.name": destination},
            count=consumed,
            duration=failed("")[1],
            failed=failed,
        )
        return route
