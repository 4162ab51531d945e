"""Several baked services as real processes, one broker, a real Jaeger, and the API gateway.

Shared by the end-to-end test, the live stack test and ``scripts/demo.py``: bake three services
with different options, start them with ``python -m`` exporting their spans to Jaeger (one over
OTLP/gRPC, one over OTLP/HTTP), send them requests and collect what they did: the spans, read
back through Jaeger's query API, their JSON log lines and their /metrics. The service baked
with Consul discovery registers itself in a Consul stand-in (tests/stack/consul_standin.py).
Given the gateway's binary, the gateway (gateway/Caddyfile and its route table as shipped)
runs in front of the three, exporting its spans to the same Jaeger over OTLP/HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import nats
from cookiecutter.main import cookiecutter
from service_chassis.testing.postgres import create_database, drop_database

from tests.net import free_port
from tests.stack.consul_standin import ConsulStandin
from tests.stack.gateway import Gateway, run_gateway
from tests.stack.programs import Jaeger, JaegerSpan

# The template to bake: this checkout, or another one (e.g. a release tag's) named by
# SERVICE_TEMPLATE_DIR.
TEMPLATE = Path(os.environ.get("SERVICE_TEMPLATE_DIR") or Path(__file__).resolve().parents[2])

# Three services, each baked with different options, playing the parts of the trace:
# storefront (HTTP only) -> orders (publishes) -> shipping (consumes, with its database's inbox,
# and calls the storefront back). shipping also bakes the example saga, as its own participant
# (the live stack's saga dashboard reads it; tests/e2e/test_saga_trace.py has three services).
BAKES: dict[str, dict[str, str]] = {
    "storefront": {"service_name": "storefront", "messaging": "none", "discovery": "none"},
    "orders": {"service_name": "orders", "messaging": "nats", "discovery": "kubernetes"},
    "shipping": {
        "service_name": "shipping",
        "messaging": "nats",
        "discovery": "consul",
        "database": "postgres",
        "saga": "place-order",
        "python_version": "3.12",
    },
}
# How each service sends its spans to Jaeger: both OTLP transports are in every run.
OTLP_PROTOCOLS = {"storefront": "grpc", "orders": "http/protobuf", "shipping": "grpc"}


@dataclass
class Service:
    name: str
    project: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def package(self) -> str:
        return self.project.name.replace("-", "_")

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.project / "src"),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            **self.env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.package],
            cwd=self.project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                self.lines.append(line)

        self.reader = threading.Thread(target=pump, daemon=True)
        self.reader.start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{''.join(self.lines)}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready:\n{''.join(self.lines)}")

    def stop(self, kill: bool = False) -> int | None:
        """Stops the process (SIGTERM, a graceful shutdown; SIGKILL with `kill`), returns its
        exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]


@dataclass
class Cluster:
    services: dict[str, Service]
    jaeger: Jaeger
    consul: ConsulStandin
    destination: str
    replicas: list[Service] = field(default_factory=list)
    gateway: Gateway | None = None

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    def start_replica(self, name: str, env: Mapping[str, str] | None = None) -> Service:
        """Another instance of a service: the same project and settings (but for `env`), its
        own port."""
        original = self.services[name]
        replica = Service(name, original.project, free_port(), {**original.env, **(env or {})})
        self.replicas.append(replica)
        replica.start()
        replica.wait_ready()
        return replica

    def trace(self, trace_id: str) -> list[JaegerSpan]:
        """The trace's spans as Jaeger has them."""
        return self.jaeger.trace(trace_id)


def bake_all(output: Path, broker: str) -> dict[str, Path]:
    """The three services, the two with messaging on ``broker``."""
    projects = {}
    for part, answers in BAKES.items():
        if answers["messaging"] != "none":
            answers = {**answers, "messaging": broker}
        project = cookiecutter(
            str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output)
        )
        projects[part] = Path(project)
    return projects


def otlp_env(jaeger: Jaeger, protocol: str) -> dict[str, str]:
    """The standard variables that send a service's spans to `jaeger` over `protocol`."""
    endpoint = jaeger.otlp_grpc_endpoint if protocol == "grpc" else jaeger.otlp_http_endpoint
    return {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}


@contextmanager
def running_cluster(
    output: Path,
    broker_url: str,
    jaeger: Jaeger,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
    broker: str = "nats",
    gateway_binary: Path | None = None,
) -> Iterator[Cluster]:
    """Bake, start and wire the three services; stop them all on the way out.

    Every service exports its spans to `jaeger` (over the protocol OTLP_PROTOCOLS gives it);
    the one baked with Consul discovery registers in a Consul stand-in started here.
    ``extra_env`` adds (or overrides) environment variables per service, by part name.
    With ``gateway_binary``, the gateway runs in front of them (``cluster.gateway``).
    """
    projects = bake_all(output, broker)
    # Fresh subjects per run: JetStream keeps streams, and runs must not see each other.
    run_prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    destination = f"{run_prefix}.events"
    ports = {part: free_port() for part in projects}
    with ExitStack() as stack:
        consul = stack.enter_context(ConsulStandin().serve())
        common = {
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "LOG_LEVEL": "INFO",
            "CONSUL_HTTP_ADDR": consul.url,
            # The registration's check starts critical and is probed at this interval (10 s by
            # default): a registration made before the service was ready passes a second later.
            "CONSUL_CHECK_INTERVAL": "1s",
            # The conventions the e2e test checks that are off by default.
            "BAGGAGE_ATTRIBUTES": "k1,k3",
            "TRACE_CONNECTION_ATTRIBUTES": "true",
        }
        envs: Mapping[str, dict[str, str]] = {
            "storefront": {"DOWNSTREAM_URL": f"http://127.0.0.1:{ports['orders']}/events"},
            "orders": {
                "BROKER_URL": broker_url,
                "MESSAGING_DESTINATION": destination,
                "MESSAGING_DEAD_LETTER_DESTINATION": f"{run_prefix}.orders.dlq",
            },
            "shipping": {
                "BROKER_URL": broker_url,
                "MESSAGING_DESTINATION": destination,
                "MESSAGING_DEAD_LETTER_DESTINATION": f"{run_prefix}.shipping.dlq",
                "DOWNSTREAM_URL": f"http://127.0.0.1:{ports['storefront']}/items/1",
                "STOCK_URL": f"http://127.0.0.1:{ports['shipping']}",
                "PAYMENTS_URL": f"http://127.0.0.1:{ports['shipping']}",
            },
        }
        services = {
            part: Service(
                part,
                project,
                ports[part],
                {
                    **common,
                    **otlp_env(jaeger, OTLP_PROTOCOLS[part]),
                    **envs[part],
                    **(extra_env or {}).get(part, {}),
                },
            )
            for part, project in projects.items()
        }
        for part, service in services.items():
            if BAKES[part].get("database", "none") != "none":
                service.env["DATABASE_URL"] = stack.enter_context(migrated(service))
        cluster = Cluster(services, jaeger, consul, destination)
        try:
            for service in services.values():
                service.start()
            for service in services.values():
                service.wait_ready()
            if gateway_binary is not None:
                cluster.gateway = stack.enter_context(
                    run_gateway(
                        gateway_binary,
                        output / "gateway",
                        {name: f"127.0.0.1:{service.port}" for name, service in services.items()},
                        jaeger,
                    )
                )
            yield cluster
        finally:
            for service in [*services.values(), *cluster.replicas]:
                service.stop()
            cleanup_broker(broker, broker_url, run_prefix, destination)


@contextmanager
def migrated(service: Service) -> Iterator[str]:
    """A database of the service's own on the test server, migrated by the service's own
    ``migrate`` command; dropped afterwards. Its URL."""
    url = asyncio.run(create_database(prefix=f"e2e_{service.package}"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", service.package, "migrate"],
            cwd=service.project,
            env={**os.environ, "PYTHONPATH": str(service.project / "src"), "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        yield url
    finally:
        asyncio.run(drop_database(url))


def cleanup_broker(broker: str, broker_url: str, run_prefix: str, destination: str) -> None:
    """Removes what one run left on the broker."""
    if broker == "nats":
        asyncio.run(delete_streams(broker_url, run_prefix))
    else:
        asyncio.run(delete_rabbitmq_destinations(broker_url, run_prefix, destination))


async def delete_rabbitmq_destinations(broker_url: str, prefix: str, destination: str) -> None:
    """Remove one run's exchange and queues (messaging/rabbitmq.py names them)."""
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        for name in (
            f"{destination}.orders",
            f"{destination}.shipping",
            f"{prefix}.orders.dlq",
            f"{prefix}.shipping.dlq",
        ):
            await channel.queue_delete(name)
        await channel.exchange_delete(destination)


async def delete_streams(broker_url: str, prefix: str) -> None:
    """Remove the JetStream streams of one run (their subjects start with ``prefix``)."""
    connection = await nats.connect(broker_url, connect_timeout=5)
    try:
        jetstream = connection.jetstream()
        for stream in await jetstream.streams_info():
            if any(subject.startswith(prefix) for subject in stream.config.subjects or []):
                await jetstream.delete_stream(stream.config.name or "")
    finally:
        await connection.close()


KIND_NAMES = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def trace_tree(spans: list[Any], trace_id: str) -> str:
    """The trace as an indented tree: service, kind, name and duration of every span."""
    in_trace = [span for span in spans if span.trace_id == trace_id]
    ids = {span.span_id for span in in_trace}
    children: dict[str, list[Any]] = {}
    for span in in_trace:
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        if not parent:  # a consumer linked (not parented) to its producer hangs under it
            parent = next((s for t, s in span.links if t == trace_id and s in ids), "")
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            kind = KIND_NAMES.get(span.kind, "?")
            lines.append(
                f"{'  ' * depth}{span.service:<10} {kind:<8} {span.name:<32} "
                f"{span.duration_ms:8.2f} ms"
            )
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)
