"""Export cost per span: the same batches posted to an OTLP/HTTP sink by the SDK's requests
transport and by its urllib3 transport (export_transport.py), side by side.

Each round builds a batch of ``--batch`` encoded server spans, then posts it ``--posts`` times
through each transport in turn, measuring the exporting thread's CPU time; medians of the
rounds and the ratio are printed. The sink is a separate process that reads and discards.

    cd chassis && ../.venv/bin/python benchmarks/bench_export.py [--batch 512] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench_support import running_sink  # benchmarks/ is on sys.path when run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from service_chassis.tracing import FastHttpSpanExporter

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--posts", type=int, default=20)
    options = parser.parse_args()

    with running_sink() as port:
        endpoint = f"http://127.0.0.1:{port}/v1/traces"
        exporters = {
            "requests": FastHttpSpanExporter(endpoint=endpoint),
            "urllib3": FastHttpSpanExporter(endpoint=endpoint),
        }
        exporters["requests"]._client._transport = RequestsHTTPTransport(verify=True)
        exporters["urllib3"]._client._transport = Urllib3HTTPTransport(verify=True)
        tracer = TracerProvider().get_tracer("bench")
        spans = []
        for number in range(options.batch):
            with tracer.start_as_current_span(
                "GET /items/{item_id}",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "GET", "url.path": f"/items/{number}"},
            ) as span:
                spans.append(span)
        payload = exporters["urllib3"].encoder.encode(spans)  # type: ignore[arg-type]
        per_span: dict[str, list[float]] = {name: [] for name in exporters}
        for _ in range(options.rounds):
            for name, exporter in exporters.items():
                started = time.thread_time()
                for _ in range(options.posts):
                    assert exporter._client.export(payload).success
                elapsed = time.thread_time() - started
                per_span[name].append(elapsed / options.posts / options.batch * 1e6)
    medians = {name: statistics.median(values) for name, values in per_span.items()}
    print(f"{options.batch} spans per post ({len(payload)} bytes), {options.rounds} rounds:")
    for name, value in medians.items():
        print(f"  {name:9} {value:5.2f} us of CPU per span")
    print(f"  urllib3 / requests: {medians['urllib3'] / medians['requests']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
