from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.sample import DEFAULT_HTTP_PORT
from tests.sample.settings import Settings


def test_unprefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "9123")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("MESSAGING_BROKER", "kafka")
    monkeypatch.setenv("SERVICE_DISCOVERY", "consul")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    settings = Settings()
    assert settings.http_port == 9123
    assert settings.log_level == "DEBUG"
    assert settings.messaging_broker == "kafka"
    assert settings.service_discovery == "consul"
    assert settings.service_name == "renamed"
    assert settings.traces_exporters == ("console", "otlp")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PORT", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.http_port == DEFAULT_HTTP_PORT
    assert settings.service_name == "sample"
    assert not settings.otlp_endpoint_configured
    assert not settings.trace_operation_spans


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTP_PORT", "70000"),
        ("LOG_LEVEL", "LOUD"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("MESSAGING_BROKER", "carrier-pigeon"),
        ("SERVICE_DISCOVERY", "zookeeper"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=f"(?i){name}"):
        Settings()
