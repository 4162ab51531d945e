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
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, StatusCode, TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram

from .._version import __version__
from ..lean_spans import lean_tracer
from ..metrics import DURATION_BUCKETS, current_exemplar

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


Send = Callable[[MutableMapping[str, str]], Awaitable[None]]
Process = Callable[[], Awaitable[None]]


class MessagingTelemetry:
    """One transport's spans and metrics: ``send`` wraps a publish, ``process`` a delivery."""

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
        self._tracer = lean_tracer(tracer_provider, "service_chassis.messaging", __version__)
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
        # Label lookups validate and lock; the few combinations are cached.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    async def send(
        self,
        send: Send,
        *,
        destination: str,
        message_id: str,
        headers: MutableMapping[str, str],
    ) -> None:
        """Send inside a PRODUCER span whose context (and the baggage) goes in ``headers``."""
        span = self._tracer.start_span(
            f"{self._send_operation} {destination}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": self.system,
                "messaging.operation.type": "send",
                "messaging.operation.name": self._send_operation,
                "messaging.destination.name": destination,
                "messaging.message.id": message_id,
            },
        )
        context = trace.set_span_in_context(span)
        propagate.inject(headers, context)
        token = otel_context.attach(context)
        error_type = ""
        started = time.perf_counter()
        try:
            await send(headers)
        except BaseException as error:
            error_type = type(error).__qualname__
            raise
        finally:
            elapsed = time.perf_counter() - started
            labels = (self.system, self._send_operation, destination, error_type)
            self._child(self._instruments.sent, *labels).inc()
            self._child(self._instruments.send_duration, *labels).observe(
                elapsed, exemplar=current_exemplar()
            )
            _end(span, error_type)
            otel_context.detach(token)

    async def process(
        self,
        process: Process,
        *,
        destination: str,
        message_id: str,
        headers: Mapping[str, Any],
    ) -> None:
        """Process inside a CONSUMER span, child of the message's context and linked to it."""
        extracted = propagate.extract(headers, otel_context.Context(), getter=HEADERS)
        sender = trace.get_current_span(extracted).get_span_context()
        links: Sequence[Link] = (Link(sender),) if sender.is_valid else ()
        attributes = {
            **self._consumer_attributes,
            "messaging.destination.name": destination,
            "messaging.message.id": message_id,
        }
        span = self._tracer.start_span(
            f"{PROCESS_OPERATION} {destination}",
            extracted,
            SpanKind.CONSUMER,
            attributes,
            links,
        )
        token = otel_context.attach(trace.set_span_in_context(span, extracted))
        error_type = ""
        started = time.perf_counter()
        try:
            await process()
        except BaseException as error:
            error_type = type(error).__qualname__
            raise
        finally:
            elapsed = time.perf_counter() - started
            instruments = self._instruments
            self._child(
                instruments.consumed, self.system, PROCESS_OPERATION, destination, self._group, ""
            ).inc()
            labels = (self.system, PROCESS_OPERATION, destination, self._group, error_type)
            self._child(instruments.process_duration, *labels).observe(
                elapsed, exemplar=current_exemplar()
            )
            _end(span, error_type)
            otel_context.detach(token)


def _end(span: trace.Span, error_type: str) -> None:
    if error_type:
        # The class only: an exception's message may carry data that must not be exported.
        span.set_attribute("error.type", error_type)
        span.set_status(StatusCode.ERROR)
    span.end()
