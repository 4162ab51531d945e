"""Bake three services, run them against one NATS server, and follow one request through them.

    make demo

gateway (HTTP only) relays a POST to orders through its resilient client; orders publishes an
event on NATS; shipping consumes it and calls the gateway back. Every service exports its spans
over OTLP to a receiver in this script, which prints the trace as a tree. With the local stack
running (docker compose up), point OTEL_EXPORTER_OTLP_ENDPOINT at Jaeger instead and find the
same trace at http://localhost:16686.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.cluster import running_cluster, trace_tree  # noqa: E402
from tests.net import port_open  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
NATS_PORT = 4222


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


def main() -> int:
    with tempfile.TemporaryDirectory() as workdir:
        step("Starting a broker")
        nats = start_nats(Path(workdir) / "nats")
        try:
            step("Baking gateway (no broker), orders (NATS) and shipping (NATS, Python 3.12)")
            with running_cluster(Path(workdir), f"nats://127.0.0.1:{NATS_PORT}") as cluster:
                for name, service in cluster.services.items():
                    ready = httpx.get(service.url + "/health/ready").json()
                    print(
                        f"{name:<9} {service.url}  ready: {ready['status']}  "
                        f"checks: {', '.join(ready['checks']) or '-'}"
                    )
                step("POST /downstream on gateway, with a traceparent")
                response = httpx.post(
                    cluster["gateway"].url + "/downstream",
                    json={"type": "order.placed", "data": {"order": 7}},
                    headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
                    timeout=10,
                )
                print(response.status_code, json.dumps(response.json()))
                time.sleep(3)  # the event travels, the services export their spans
                step(f"Trace {TRACE_ID}, as the services exported it")
                print(trace_tree(cluster.receiver.spans, TRACE_ID))
                step("Each service's log lines with that trace id")
                for name, service in cluster.services.items():
                    for line in service.logs():
                        if line.get("trace_id") == TRACE_ID:
                            print(f"{name:<9} {line['level']:<7} {line['event']}")
                step("orders' RED metric for the route it served")
                metrics = httpx.get(
                    cluster["orders"].url + "/metrics",
                    headers={"accept": "application/openmetrics-text"},
                ).text
                for line in metrics.splitlines():
                    if line.startswith("http_server_request_duration_seconds_count"):
                        print(line)
        finally:
            if nats is not None:
                nats.terminate()
                nats.wait(timeout=10)
    step(
        "Done. With Docker: docker compose up -d, set "
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 on the services, and open "
        "Jaeger at http://localhost:16686 and Grafana at http://localhost:3000."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
