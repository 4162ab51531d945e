"""The query count and time of one request, on its server span.

``QueryTally`` is a pure ASGI layer just inside the request observer: it gives the request a
tally that the statement telemetry adds to, and writes it on the server span when the
response starts (``db.client.query_count``, ``db.client.query_duration`` in seconds), so a
slow request's trace says at a glance whether the database is where the time went.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

QUERY_COUNT = "db.client.query_count"
QUERY_DURATION = "db.client.query_duration"


@dataclass
class Tally:
    count: int = 0
    seconds: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds


current_tally: ContextVar[Tally | None] = ContextVar("current_tally", default=None)


class QueryTally:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tally = Tally()
        token = current_tally.set(tally)
        span = trace.get_current_span()

        async def send_with_tally(message: Message) -> None:
            if message["type"] == "http.response.start" and tally.count:
                span.set_attribute(QUERY_COUNT, tally.count)
                span.set_attribute(QUERY_DURATION, round(tally.seconds, 6))
            await send(message)

        try:
            await self.app(scope, receive, send_with_tally)
        finally:
            current_tally.reset(token)
