from __future__ import annotations

import pytest
from pydantic import ValidationError

from {{ cookiecutter.__package_name }} import DEFAULT_HTTP_PORT
from {{ cookiecutter.__package_name }}.settings import Settings


def test_unprefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "9123")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("DOWNSTREAM_URL", "http://inventory:8000/stock")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    settings = Settings()
    assert settings.http_port == 9123
    assert settings.log_level == "DEBUG"
    assert settings.downstream_url == "http://inventory:8000/stock"
    assert settings.service_name == "renamed"
    assert settings.traces_exporters == ("console", "otlp")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PORT", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.http_port == DEFAULT_HTTP_PORT
    assert settings.service_name == "{{ cookiecutter.service_name }}"
    assert not settings.otlp_endpoint_configured
    assert not settings.trace_operation_spans


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTP_PORT", "70000"),
        ("LOG_LEVEL", "LOUD"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
