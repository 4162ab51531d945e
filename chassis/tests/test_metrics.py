from __future__ import annotations

import platform

import httpx
from fastapi import FastAPI

import service_chassis
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
