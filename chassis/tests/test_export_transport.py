"""Exports travel over urllib3 only where requests would send them the same way, and carry
the exporter's settings (headers, compression) either way."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from service_chassis.export_transport import requests_adds_something
from service_chassis.tracing import FastHttpSpanExporter

ENDPOINT = "http://collector:4318/v1/traces"


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def test_a_plain_http_endpoint_goes_over_urllib3() -> None:
    assert not requests_adds_something(ENDPOINT)
    assert not requests_adds_something("http://127.0.0.1:4318/v1/traces")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HTTP_PROXY", "http://proxy:3128"),
        ("ALL_PROXY", "http://proxy:3128"),
        ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER", "vault"),
        ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "vault"),
    ],
)
def test_a_proxy_or_a_credential_provider_keeps_requests(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert requests_adds_something(ENDPOINT)


def test_a_proxy_the_collector_bypasses_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "collector,localhost")
    assert not requests_adds_something(ENDPOINT)


def test_tls_and_netrc_credentials_keep_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert requests_adds_something("https://collector:4318/v1/traces")
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine collector login svc password secret\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert requests_adds_something(ENDPOINT)
    assert not requests_adds_something("http://other:4318/v1/traces")


class Collector:
    """An OTLP/HTTP endpoint on loopback that keeps what it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                collector.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def one_span() -> ReadableSpan:
    with TracerProvider().get_tracer("test").start_as_current_span("one") as span:
        pass
    assert isinstance(span, ReadableSpan)
    return span


@pytest.mark.parametrize("with_netrc", [False, True])
def test_either_transport_sends_the_exporters_headers_and_compression(
    monkeypatch: pytest.MonkeyPatch, collector: Collector, tmp_path: Path, with_netrc: bool
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    if with_netrc:  # credentials for the collector: requests sends, and reads them
        netrc_file = tmp_path / "netrc"
        netrc_file.write_text("machine 127.0.0.1 login svc password secret\n")
        netrc_file.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc_file))
    exporter = FastHttpSpanExporter(endpoint=collector.endpoint)
    expected = RequestsHTTPTransport if with_netrc else Urllib3HTTPTransport
    assert type(exporter._client._transport) is expected
    assert exporter.export([one_span()]) == SpanExportResult.SUCCESS
    ((headers, body),) = collector.requests
    assert headers["x-tenant"] == "acme"
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers.get("authorization", "").startswith("Basic ") == with_netrc
    request = ExportTraceServiceRequest.FromString(gzip.decompress(body))
    assert [span.name for span in request.resource_spans[0].scope_spans[0].spans] == ["one"]
