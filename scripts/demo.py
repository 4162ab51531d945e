"""Bake three services, run them on one NATS server with Jaeger, and follow one request through.

    make demo

The request enters through the API gateway (gateway/Caddyfile and its route table, on the
Caddy that scripts/install-stack.sh builds from gateway/), which passes /storefront/downstream
to storefront (HTTP only); storefront relays the POST to orders through its resilient client;
orders publishes an event on NATS; shipping consumes it and calls the storefront back (and
registers itself in a Consul stand-in). The gateway and every service export their spans to
Jaeger (storefront and shipping over OTLP/gRPC, orders and the gateway over OTLP/HTTP); the
trace is read back from Jaeger's query API, printed as a tree with the gateway's span on top,
and its Jaeger URL shown.

Jaeger: the one of the local stack when it runs (docker compose up -d, or
`bash scripts/install-stack.sh --run`), where the trace stays after the demo; otherwise the
demo starts Jaeger itself with observability/jaeger/config.yaml (scripts/install-stack.sh
builds it the first time, in a few minutes) and stops it at the end.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.cluster import running_cluster, trace_tree  # noqa: E402
from tests.net import port_open  # noqa: E402
from tests.stack.gateway import routes  # noqa: E402
from tests.stack.programs import (  # noqa: E402
    Jaeger,
    JaegerPorts,
    StackMissing,
    run_jaeger,
    send_client_span,
    stack_binaries,
    wait_until,
)

NATS_PORT = 4222
CLIENT = "demo-client"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def start_nats(data: Path) -> subprocess.Popen[bytes] | None:
    if port_open(NATS_PORT):
        print(f"using the NATS server on 127.0.0.1:{NATS_PORT}")
        return None
    binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    print(f"starting {binary} with JetStream on 127.0.0.1:{NATS_PORT}")
    server = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(NATS_PORT), "-js", "-sd", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if port_open(NATS_PORT):
            return server
        time.sleep(0.1)
    raise SystemExit("NATS did not start")


def running_jaeger_at(ports: JaegerPorts) -> Jaeger | None:
    """The stack's Jaeger, when one answers on the standard ports."""
    if not all(port_open(p) for p in (ports.query_http, ports.otlp_grpc, ports.otlp_http)):
        return None
    jaeger = Jaeger(ports, Path("/dev/null"))
    try:
        jaeger.services()
    except (OSError, ValueError, RuntimeError):
        return None
    return jaeger


@contextlib.contextmanager
def jaeger_for_the_demo(workdir: Path, binary: Path) -> Iterator[tuple[Jaeger, bool]]:
    """(Jaeger, started here): the stack's, or one of the demo's own."""
    standard = JaegerPorts.standard()
    found = running_jaeger_at(standard)
    if found is not None:
        print(f"using the Jaeger at {found.ui}")
        yield found, False
        return
    free = not any(port_open(port) for port in vars(standard).values())
    ports = standard if free else JaegerPorts.free()
    with run_jaeger(binary, workdir / "jaeger", ports) as jaeger:
        print(f"started {binary} with observability/jaeger/config.yaml; UI at {jaeger.ui}")
        yield jaeger, True


def main() -> int:
    trace_id, root_span = secrets.token_hex(16), secrets.token_hex(8)
    try:
        # Built the first time (minutes), then cached: the gateway always, Jaeger for when the
        # stack's is not running.
        binaries = stack_binaries("jaeger", "gateway", build=True, timeout=None, show_progress=True)
    except StackMissing as error:
        raise SystemExit(f"the stack's programs could not be built: {error}") from None
    with tempfile.TemporaryDirectory() as workdir:
        step("Starting a broker and Jaeger")
        nats = start_nats(Path(workdir) / "nats")
        try:
            with jaeger_for_the_demo(Path(workdir), binaries["jaeger"]) as (jaeger, started_here):
                step(
                    "Baking storefront (no broker), orders (NATS) and shipping (NATS, Consul, "
                    "Python 3.12)"
                )
                with running_cluster(
                    Path(workdir),
                    f"nats://127.0.0.1:{NATS_PORT}",
                    jaeger,
                    gateway_binary=binaries["caddy"],
                ) as cluster:
                    gateway = cluster.gateway
                    assert gateway is not None
                    for name, service in cluster.services.items():
                        ready = httpx.get(service.url + "/health/ready").json()
                        print(
                            f"{name:<10} {service.url}  ready: {ready['status']}  "
                            f"checks: {', '.join(ready['checks']) or '-'}"
                        )
                    print(
                        f"{'gateway':<10} {gateway.url}  routes: "
                        + ", ".join(f"{r.prefix}/ ({r.auth})" for r in routes())
                    )
                    step("POST /storefront/downstream on the gateway, with a traceparent")
                    start_ns = time.time_ns()
                    response = httpx.post(
                        gateway.url + "/storefront/downstream",
                        json={"type": "order.placed", "data": {"order": 7}},
                        headers={"traceparent": f"00-{trace_id}-{root_span}-01"},
                        timeout=10,
                    )
                    send_client_span(
                        jaeger, CLIENT, trace_id, root_span, start_ns, time.time_ns(), 200
                    )
                    print(response.status_code, json.dumps(response.json()))

                    def complete() -> bool:
                        """The callback from shipping to the storefront is the trace's last hop."""
                        return any(
                            s.service == "storefront" and s.name == "GET /items/{item_id}"
                            for s in jaeger.trace(trace_id)
                        )

                    wait_until("the trace in Jaeger", complete, timeout=30)
                    time.sleep(1)  # the last client and consumer spans end just after
                    step(f"Trace {trace_id}, read back from Jaeger")
                    print(trace_tree(jaeger.trace(trace_id), trace_id))
                    step("The gateway's and each service's log lines with that trace id")
                    for line in gateway.logs():
                        if line.get("trace_id") == trace_id:
                            print(
                                f"{'gateway':<10} {line['level']:<7} {line['event']}: "
                                f"{line['request']['method']} {line['request']['uri']} "
                                f"{line['status']}"
                            )
                    for name, service in cluster.services.items():
                        for line in service.logs():
                            if line.get("trace_id") == trace_id:
                                print(f"{name:<10} {line['level']:<7} {line['event']}")
                    step("orders' RED metric for the route it served")
                    metrics = httpx.get(
                        cluster["orders"].url + "/metrics",
                        headers={"accept": "application/openmetrics-text"},
                    ).text
                    for line in metrics.splitlines():
                        if line.startswith("http_server_request_duration_seconds_count"):
                            print(line)
                step(f"The trace in Jaeger: {jaeger.trace_url(trace_id)}")
                if started_here:
                    print(
                        "This Jaeger is the demo's own and stops with it. To keep traces, run "
                        "the stack first (bash scripts/install-stack.sh --run, or docker "
                        "compose up -d)."
                    )
                    if sys.stdin.isatty():
                        input("Press Enter to stop Jaeger. ")
        finally:
            if nats is not None:
                nats.terminate()
                nats.wait(timeout=10)
    step(
        "Done. Dashboards: docker compose up -d, and Grafana at http://localhost:3000 "
        "(observability/README.md)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
