"""Messaging overhead benchmark: the same publish and consume path, telemetry on and off.

Both variants use the chassis's transport, publisher and reliable consumer on the same broker
(``--broker nats|rabbitmq|kafka`` at ``BROKER_URL``, else its local default) in one run; they
differ only in telemetry. "On" is what the service runs: the chassis's messaging spans (sampled
at 100 %, exported over OTLP/HTTP in batches to a receiver process, with the service's
exporter and span processor), its messaging metrics with exemplars and W3C context and baggage
in the message headers. Each round publishes ``--messages`` events with no consumer running
(``--concurrency`` publishes in flight, each awaiting the broker's confirmation), then consumes
them. It reports the publish rate (until the last confirmation) and the consume rate (from the
consumer's start until the last event was handled), both with the spans flushed, and the CPU
time per event of each phase. Rounds alternate off/on; medians and ratios are printed. Target:
the traced rate is at least 0.8 of the untraced one.

    cd chassis && ../.venv/bin/python benchmarks/bench_messaging.py --broker nats \
        [--messages 2000] [--rounds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_support import running_sink  # scripts/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
BROKER = "nats"  # set from --broker in main()
TARGET = 0.8  # traced rate / untraced rate, publish and consume


@dataclass(frozen=True)
class Rates:
    published: float  # events per second of wall time
    consumed: float
    publish_cpu: float  # microseconds of this process's CPU time per event (all threads)
    consume_cpu: float


def _module(name: str) -> Any:
    return importlib.import_module(f"service_chassis.messaging{name}")


def _module_of(name: str) -> Any:
    return importlib.import_module(name)


def _settings(unique: str, concurrency: int) -> Any:
    return _module(".settings").MessagingSettings(
        broker_url=os.environ.get("BROKER_URL"),
        destination=f"{unique}.events",
        dead_letter_destination=f"{unique}.events.dlq",
        consumer_group=unique,
        concurrency=concurrency,
        connect_wait_seconds=10,
    )


async def one_round(
    *, traced: bool, messages: int, concurrency: int, sink: str, sampler_ratio: float
) -> Rates:
    """Publish ``messages`` with no consumer running, then consume them: two clean phases."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
    from prometheus_client import CollectorRegistry

    _module_of("service_chassis.propagation").install_propagators()  # as Service does
    broker, events = _module(f".{BROKER}"), _module(".events")
    settings = _settings(f"bench-{uuid.uuid4().hex[:8]}", concurrency)
    # A service samples parentbased_always_on unless OTEL_TRACES_SAMPLER says otherwise.
    root = ALWAYS_ON if sampler_ratio >= 1 else TraceIdRatioBased(sampler_ratio)
    provider = TracerProvider(sampler=ParentBased(root))
    # The exporter and processor a service runs (tracing.py): OTLP/HTTP with the chassis's
    # span encoder, each span queued already encoded.
    tracing = _module_of("service_chassis.tracing")
    exporter = tracing.FastHttpSpanExporter(endpoint=f"{sink}/v1/traces")
    provider.add_span_processor(tracing.EncodingBatchSpanProcessor(exporter))
    registry = CollectorRegistry()
    telemetry = _module(".transport").Telemetry(provider, registry) if traced else None

    producer = broker.build_transport(settings, telemetry)
    publisher = _module(".publisher").EventPublisher(producer, settings)
    batch = [events.Event.create(events.NewEvent(type="bench")) for _ in range(messages)]
    slots = asyncio.Semaphore(concurrency)

    async def publish(event: Any) -> None:
        async with slots:
            await publisher.publish(event)

    await producer.start()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(publish(event) for event in batch))
    provider.force_flush()  # the spans' export is part of the cost
    published, publish_cpu = time.perf_counter() - started, time.process_time() - cpu
    await producer.stop()

    handled = 0
    all_handled = asyncio.Event()

    async def handler(event: Any) -> None:
        nonlocal handled
        handled += 1
        if handled == messages:
            all_handled.set()

    consumer = broker.build_transport(settings, telemetry)
    consumer.subscribe(
        _module(".consumer").ReliableConsumer(
            transport=consumer,
            handler=handler,
            store=_module(".idempotency").InMemoryIdempotencyStore(),
            metrics=_module(".metrics").create_messaging_metrics(registry),
            settings=settings,
        )
    )
    started, cpu = time.perf_counter(), time.process_time()
    await consumer.start()
    try:
        await asyncio.wait_for(all_handled.wait(), timeout=120)
        provider.force_flush()
        consumed, consume_cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop_consuming()
        await consumer.delete_destinations()
        await consumer.stop()
        provider.shutdown()
    per_event = 1e6 / messages
    return Rates(
        messages / published, messages / consumed, publish_cpu * per_event, consume_cpu * per_event
    )


def median(runs: list[Rates]) -> Rates:
    return Rates(
        statistics.median(r.published for r in runs),
        statistics.median(r.consumed for r in runs),
        statistics.median(r.publish_cpu for r in runs),
        statistics.median(r.consume_cpu for r in runs),
    )


async def bench(options: argparse.Namespace, sink: str) -> tuple[Rates, Rates]:
    plain: list[Rates] = []
    traced: list[Rates] = []
    common = {
        "messages": options.messages,
        "concurrency": options.concurrency,
        "sink": sink,
        "sampler_ratio": options.sampler_ratio,
    }
    await one_round(traced=False, **{**common, "messages": options.messages // 4})  # warm-up
    await one_round(traced=True, **{**common, "messages": options.messages // 4})
    # As the service does once started (server.py): what lives as long as the process leaves
    # the collector's generations, so a full collection costs a round what it costs a service.
    gc.collect()
    gc.freeze()
    for number in range(1, options.rounds + 1):
        plain.append(await one_round(traced=False, **common))
        traced.append(await one_round(traced=True, **common))
        print(
            f"round {number}: off {plain[-1].published:6.0f} pub/s {plain[-1].consumed:6.0f} con/s"
            f"   on {traced[-1].published:6.0f} pub/s {traced[-1].consumed:6.0f} con/s",
            flush=True,
        )
    return median(plain), median(traced)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--broker", choices=("nats", "rabbitmq", "kafka"), default="nats")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--sampler-ratio", type=float, default=1.0, help="share of traces sampled when on"
    )
    options = parser.parse_args()
    global BROKER
    BROKER = options.broker

    # The service logs every handled event at INFO; a benchmark wants the broker, not stdout.
    import logging

    logging.basicConfig(level=logging.WARNING)
    with running_sink() as sink_port:
        plain, traced = asyncio.run(bench(options, f"http://127.0.0.1:{sink_port}"))

    print(
        f"\n{BROKER}, {options.messages} events x {options.rounds} rounds, "
        f"{options.sampler_ratio:.0%} of traces sampled, medians:"
    )
    print(f"{'':16}{'publish/s':>11}{'consume/s':>11}{'publish CPU':>14}{'consume CPU':>14}")
    for name, rates in (("telemetry off", plain), ("telemetry on", traced)):
        print(
            f"{name:16}{rates.published:11.0f}{rates.consumed:11.0f}"
            f"{rates.publish_cpu:11.0f} us{rates.consume_cpu:11.0f} us"
        )
    print(
        f"{'ratio on/off':16}{traced.published / plain.published:11.2f}"
        f"{traced.consumed / plain.consumed:11.2f}"
        f"{plain.publish_cpu / traced.publish_cpu:14.2f}"
        f"{plain.consume_cpu / traced.consume_cpu:14.2f}"
        "   (CPU ratios: off/on cost per event)"
    )
    for what, ratio in (
        ("publish", traced.published / plain.published),
        ("consume", traced.consumed / plain.consumed),
    ):
        met = "met" if ratio >= TARGET else "NOT met"
        print(f"{what}: traced at {ratio:.2f} of untraced (target >= {TARGET}): {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
