from __future__ import annotations

import asyncio
import platform
from unittest import mock

import httpx
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

import service_chassis
from service_chassis.metrics import DURATION_BUCKETS, observe, render
from service_chassis.testing.servers import serve
from tests.sample import OWNER, __version__

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_metrics_text_has_the_standard_families(client: httpx.AsyncClient) -> None:
    await client.get("/items/1")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE http_server_request_duration_seconds histogram" in text
    assert "# TYPE http_client_request_duration_seconds histogram" in text
    assert "process_cpu_seconds_total" in text
    assert "python_gc_objects_collected_total" in text
    assert "event_loop_lag_seconds" in text
    python = platform.python_version()
    chassis = service_chassis.__version__
    labels = (
        f'chassis_version="{chassis}",owner="{OWNER}",python_version="{python}",'
        f'version="{__version__}"'
    )
    build_info = "service_build_info{" + labels + "} 1.0"
    assert build_info in text
    assert " # {" not in text  # exemplars exist only in OpenMetrics


async def test_openmetrics_carries_trace_id_exemplars(client: httpx.AsyncClient) -> None:
    await client.get("/items/1", headers={"traceparent": TRACEPARENT})
    response = await client.get("/metrics", headers={"accept": OPENMETRICS})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    bucket_lines = [
        line
        for line in response.text.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket") and "# {" in line
    ]
    assert bucket_lines
    assert all('trace_id="0af7651916cd43dd8448eb211c80319c"' in line for line in bucket_lines)
    assert response.text.rstrip().endswith("# EOF")


async def test_unsampled_requests_leave_no_exemplar(client: httpx.AsyncClient) -> None:
    unsampled = TRACEPARENT[:-2] + "00"
    await client.get("/items/1", headers={"traceparent": unsampled})
    response = await client.get("/metrics", headers={"accept": OPENMETRICS})
    assert "trace_id=" not in response.text


async def test_each_app_has_its_own_registry(app: FastAPI, client: httpx.AsyncClient) -> None:
    from prometheus_client import REGISTRY

    await client.get("/items/1")
    assert REGISTRY.get_sample_value("http_server_request_duration_seconds_count") is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GET", "POST"]),
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.none() | st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
        ),
        max_size=30,
    )
)
def test_the_lean_observation_exposes_what_prometheus_client_does(
    observations: list[tuple[str, float, str | None]],
) -> None:
    """For arbitrary amounts (NaN and infinities too) and exemplars, the same OpenMetrics
    text, exemplars and all, as prometheus_client's own observe."""
    exposed = []
    for lean in (False, True):
        registry = CollectorRegistry()
        # One clock for the created and exemplar timestamps of both sides.
        with mock.patch("time.time", return_value=1.5):
            histogram = Histogram(
                "d", "d", ("method",), buckets=DURATION_BUCKETS, registry=registry
            )
            observe_all(histogram, observations, lean=lean)
        exposed.append(openmetrics.generate_latest(registry))  # type: ignore[no-untyped-call]
    assert exposed[0] == exposed[1]


def observe_all(
    histogram: Histogram, observations: list[tuple[str, float, str | None]], *, lean: bool
) -> None:
    for method, amount, trace_id in observations:
        exemplar = None if trace_id is None else {"trace_id": trace_id}
        child = histogram.labels(method)
        if lean:
            observe(child, amount, exemplar)
        else:
            child.observe(amount, exemplar=exemplar)


def active_requests_lines(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if b"http_server_active_requests" in line]


def expected_active_requests(counts: dict[str, int]) -> tuple[list[bytes], list[bytes]]:
    """What prometheus_client's own labelled Gauge exposes for these counts, in text and in
    OpenMetrics."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "http_server_active_requests",
        "HTTP server requests in flight.",
        ("http_request_method",),
        registry=registry,
    )
    for method, count in counts.items():
        gauge.labels(method).set(count)
    return (
        active_requests_lines(generate_latest(registry)),
        active_requests_lines(openmetrics.generate_latest(registry)),  # type: ignore[no-untyped-call]
    )


def exposed_active_requests(app: FastAPI) -> tuple[list[bytes], list[bytes]]:
    registry = app.state.service.metrics.registry
    return (
        active_requests_lines(render(registry, None)[0]),
        active_requests_lines(render(registry, OPENMETRICS)[0]),
    )


async def test_active_requests_expose_what_a_gauge_does_under_concurrent_requests(
    app: FastAPI,
) -> None:
    methods = ["GET"] * 5 + ["POST"] * 2 + ["BREW"]
    all_waiting, release = asyncio.Event(), asyncio.Event()
    waiting = 0

    @app.api_route("/wait", methods=["GET", "POST", "BREW"])
    async def wait() -> None:
        nonlocal waiting
        waiting += 1
        if waiting == len(methods):
            all_waiting.set()
        await release.wait()

    async with serve(app) as client:
        assert exposed_active_requests(app) == expected_active_requests({})
        requests = [asyncio.create_task(client.request(method, "/wait")) for method in methods]
        await asyncio.wait_for(all_waiting.wait(), timeout=10)
        in_flight = {"GET": 5, "POST": 2, "_OTHER": 1}
        assert exposed_active_requests(app) == expected_active_requests(in_flight)
        release.set()
        assert all(response.status_code == 200 for response in await asyncio.gather(*requests))
        # A method's series stays, at 0, once it was seen.
        done = dict.fromkeys(in_flight, 0)
        assert exposed_active_requests(app) == expected_active_requests(done)
