"""The broker's life in the service: started in the lifespan, a readiness check, a clean stop.

Starting never fails the service: when the broker is not there, the service comes up not
ready and keeps connecting in the background, so an orchestrator does not crash-loop it. Once
connected, the broker client reconnects by itself after an outage and readiness follows.

Stopping follows the stop signal, not only the lifespan: as soon as readiness turns 503 the
consumer takes no new messages and the in-flight ones finish (bounded by the drain time) and
are acked, while HTTP requests still being served can publish. The connection closes last.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

import structlog

from ..health import HealthRegistry
from .settings import MessagingSettings
from .transport import Transport, broker_outage

log = structlog.get_logger(__name__)

MAX_RECONNECT_DELAY = 30.0
# How often to look for the stop signal. The signal handler only sets a flag on the health
# registry; a poll keeps this module independent of how the process is run.
SHUTDOWN_POLL_SECONDS = 0.05


class BrokerUnavailable(ConnectionError):
    pass


def redact(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    if parts.password is None and parts.username is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class BrokerComponent:
    def __init__(
        self, transport: Transport, settings: MessagingSettings, health: HealthRegistry
    ) -> None:
        self.name = f"{transport.system} broker"
        self.started = False
        self._transport = transport
        self._settings = settings
        self._health = health
        self._url = redact(transport.url)
        self._starter: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._starter = asyncio.create_task(self._start_until_connected(), name=self.name)
        self._drainer = asyncio.create_task(self._drain_on_shutdown(), name=f"{self.name} drain")
        await asyncio.wait({self._starter}, timeout=self._settings.connect_wait_seconds)
        if not self.started:
            log.warning(
                "broker not reachable: serving not ready, connecting in the background",
                broker=self._transport.system,
                url=self._url,
            )

    async def _start_until_connected(self) -> None:
        delay = self._settings.reconnect_seconds
        while True:
            try:
                await self._transport.start()
            except Exception as error:
                log.warning(
                    "broker connection failed; retrying",
                    broker=self._transport.system,
                    url=self._url,
                    error=f"{type(error).__qualname__}: {error}",
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
            else:
                self.started = True
                log.info("broker connected", broker=self._transport.system, url=self._url)
                return

    async def _drain_on_shutdown(self) -> None:
        while not self._health.shutting_down:  # noqa: ASYNC110 - a flag, not an Event
            await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        await self._cancel_starter()
        if self.started:
            log.info(
                "shutting down: consuming stopped, waiting for in-flight messages",
                broker=self._transport.system,
                drain_seconds=self._settings.drain_seconds,
            )
            await self._transport.stop_consuming()

    async def _cancel_starter(self) -> None:
        if self._starter is not None and not self._starter.done():
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter

    async def stop(self) -> None:
        if self._drainer is not None:
            if not self._health.shutting_down:
                self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        await self._cancel_starter()
        await self._transport.stop()
        log.info("broker disconnected", broker=self._transport.system)

    async def check(self) -> str:
        """Readiness: raise unless connected."""
        if not self.started:
            raise BrokerUnavailable(f"not connected to {self._url} yet")
        if not await self._transport.is_connected():
            raise BrokerUnavailable(f"connection to {self._url} lost; reconnecting")
        broker_outage(self._transport.system).recovered()
        return "connected"
