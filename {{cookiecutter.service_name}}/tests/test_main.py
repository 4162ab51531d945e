"""The service as users run it: ``python -m``, a real port, JSON on stdout, spans exported."""

from __future__ import annotations

import httpx
from service_chassis.testing.databases import migrated_database
from service_chassis.testing.otlp_receiver import OtlpReceiver
from service_chassis.testing.servers import free_port, start_service

from {{ cookiecutter.__package_name }}.settings import Settings

from .conftest import PACKAGE


def test_runs_as_a_process_logs_json_and_exits_cleanly(otlp_receiver: OtlpReceiver) -> None:
    # A database of its own, when the service has one: the session's holds what other tests
    # left (a saga still running would be resumed here, with spans of its own trace).
    with migrated_database(Settings(), PACKAGE) as database:
        service = start_service(
            PACKAGE,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
                "LOG_LEVEL": "INFO",
                "MESSAGING_ENABLED": "false",
                "CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}",
                **database,
            },
        )
        try:
            traceparent = "00-11111111111111111111111111111111-2222222222222222-01"
            response = httpx.get(
                service.base_url + "/health/nope", headers={"traceparent": traceparent}
            )
            assert response.status_code == 404
        finally:
            exit_code = service.stop()
    assert exit_code == 0
    logs = service.logs()
    assert len(logs) == len([line for line in service.lines if line.strip()]), service.lines
    access = [line for line in logs if line.get("logger") == "access"]
    assert [line["trace_id"] for line in access] == ["11111111111111111111111111111111"]
    assert any(line["event"] == "service stopped" for line in logs)
    # Flushed at shutdown: the request's span, and no trace but the request's.
    spans = otlp_receiver.wait_for(1)
    assert {span.trace_id for span in spans} == {"11111111111111111111111111111111"}
