"""Instructions per request and per message, counted by valgrind: the figures that do not move
with a noisy machine.

Rates and CPU times on a shared or small machine drift by 10-30 % between processes and
minutes (bench_http.py and bench_messaging.py show medians for that reason). The number of
instructions a request takes does not: this benchmark counts them with valgrind's callgrind,
in the process itself, without a server or a broker, and prints each variant beside its
baseline:

- ``http``: the sample service with everything on (spans sampled at 100 % and encoded for
  OTLP, metrics with exemplars, the JSON access log) against bare FastAPI serving the same
  API, both called as ASGI apps with the same ``GET /items/1``; and the service with the
  access log off and with the SDK disabled, to show what each part takes.
- ``messaging``: the chassis's telemetry of one send and of one processing (span, context in
  the headers, metrics), on their own.

Each figure is (instructions of K operations - instructions of none) / K, both runs in fresh
processes after the same warm-up, so start-up cancels out. Not counted: the export thread's
HTTP request (bench_export.py measures it), the server, the broker, the kernel. Instructions
are not time: in a busy process the same code runs slower (caches, branch predictors), so
use this to compare changes and the wall-clock benchmarks for the ratio itself.
Needs ``valgrind`` (Debian: apt-get install valgrind); a run takes a few minutes.

    cd chassis && ../.venv/bin/python benchmarks/bench_instructions.py [http|messaging] [-n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 300
HTTP_VARIANTS = {
    "bare FastAPI": {"BENCH_BARE": "1"},
    "service, everything on": {},
    "service, access log off": {"ACCESS_LOG": "false"},
    "service, SDK disabled": {"OTEL_SDK_DISABLED": "true"},
}
MESSAGING_VARIANTS = {"send": {}, "process": {}}


def _http_app() -> Any:
    os.environ.update(
        MESSAGING_ENABLED="false",
        OTEL_TRACES_SAMPLER="always_on",
        LOG_LEVEL="INFO",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
    )
    import bench_apps  # the apps bench_http.py serves

    if os.environ.get("BENCH_BARE"):
        return bench_apps.bare()
    from tests.sample.app import create_app
    from tests.sample.settings import Settings

    from service_chassis.server import prepare

    _, provider, app = prepare(create_app, Settings)
    _no_posts(provider)
    return app


def _no_posts(provider: Any) -> None:
    """Spans are encoded and queued as in a service; the batches are not posted."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ())
    for processor in processors:
        batches = getattr(processor, "_batch_processor", None)
        if batches is not None:
            batches._exporter.export = lambda spans: SpanExportResult.SUCCESS


def _http(count: int) -> None:
    app = _http_app()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/1",
        "raw_path": b"/items/1",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def requests() -> None:
        statuses: list[int] = []

        async def note_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app({**scope, "state": {}}, receive, note_status)  # the count is of 200s
        if statuses != [200]:
            raise SystemExit(f"GET /items/1 answered {statuses}, not 200")
        for _ in range(WARM_UP + count):
            await app({**scope, "state": {}}, receive, send)

    asyncio.run(requests())


def _messaging(operation: str, count: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from service_chassis.messaging.telemetry import MessagingTelemetry
    from service_chassis.propagation import install_propagators
    from service_chassis.tracing import EncodingBatchSpanProcessor, FastHttpSpanExporter

    install_propagators()
    provider = TracerProvider()
    exporter = FastHttpSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    provider.add_span_processor(EncodingBatchSpanProcessor(exporter))
    _no_posts(provider)
    telemetry = MessagingTelemetry(
        system="nats",
        tracer_provider=provider,
        registry=CollectorRegistry(),
        consumer_group="bench",
    )
    sent: dict[str, str] = {}
    with telemetry.sending("bench.events", "first", sent):
        pass
    for number in range(WARM_UP + count):
        message_id = f"message-{number}"  # unique, as message ids are
        if operation == "send":
            with telemetry.sending("bench.events", message_id, {}):
                pass
        else:
            with telemetry.processing("bench.events", message_id, sent):
                pass


def child(what: str, variant: str, count: int) -> None:
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    if what == "http":
        os.environ.update(HTTP_VARIANTS[variant])
        # The access log goes to stdout, which the parent points at /dev/null.
        _http(count)
    else:
        _messaging(variant, count)


def instructions(what: str, variant: str, count: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            what,
            variant,
            str(count),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"Collected : (\d+)", out)
    if match is None:
        raise SystemExit(f"valgrind did not report a count:\n{out[-2000:]}")
    return int(match.group(1))


def per_operation(what: str, variants: Iterable[str], count: int) -> dict[str, float]:
    """Each variant's count, the valgrind runs side by side (one per core)."""
    runs = [(variant, n) for variant in variants for n in (0, count)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = dict(zip(runs, pool.map(lambda run: instructions(what, *run), runs), strict=True))
    return {variant: (totals[variant, count] - totals[variant, 0]) / count for variant in variants}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("http", "messaging"), default="http")
    parser.add_argument("-n", type=int, default=1000, help="operations counted per variant")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    variants = HTTP_VARIANTS if options.what == "http" else MESSAGING_VARIANTS
    counts = per_operation(options.what, variants, options.n)
    unit = "request" if options.what == "http" else "operation"
    print(f"instructions per {unit}, {options.n} counted after {WARM_UP} to warm up:")
    baseline = counts.get("bare FastAPI")
    for name, count in counts.items():
        ratio = f"   bare / this: {baseline / count:.2f}" if baseline else ""
        print(f"  {name:26} {count:10,.0f}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
