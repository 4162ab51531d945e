"""W3C ``baggage`` across the broker, in both directions.

FastStream's telemetry middleware carries ``traceparent`` and restores the trace on consume,
but it keeps incoming baggage in its own context only, and does not send the baggage of an
HTTP request on. This middleware sends the active OpenTelemetry baggage with every publish
and makes a consumed message's baggage active in the handler, so the handler's logs, outbound
HTTP calls and further publishes carry it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.response import PublishCommand
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator

_BAGGAGE = W3CBaggagePropagator()


class BaggageMiddleware(BaseMiddleware[PublishCommand, Any]):
    """Listed after FastStream's telemetry middleware, so it runs inside its span."""

    async def consume_scope(
        self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        with_baggage = _BAGGAGE.extract(msg.headers, context=otel_context.get_current())
        token = otel_context.attach(with_baggage)
        try:
            return await call_next(msg)
        finally:
            otel_context.detach(token)

    async def publish_scope(
        self, call_next: Callable[[PublishCommand], Awaitable[Any]], cmd: PublishCommand
    ) -> Any:
        _BAGGAGE.inject(cmd.headers)
        return await call_next(cmd)
