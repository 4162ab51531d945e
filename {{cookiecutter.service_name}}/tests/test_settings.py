from __future__ import annotations

import pytest
from pydantic import ValidationError

from {{ cookiecutter.__package_name }} import (
    BROKER,
    DATABASE,
    DEFAULT_HTTP_PORT,
    DISCOVERY,
    OWNER,
)
from {{ cookiecutter.__package_name }}.settings import Settings


def test_defaults_are_the_baked_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PORT",
        "OTEL_SERVICE_NAME",
        "MESSAGING_BROKER",
        "SERVICE_DISCOVERY",
        "DATABASE_SYSTEM",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.http_port == DEFAULT_HTTP_PORT
    assert settings.service_name == "{{ cookiecutter.service_name }}"
    assert settings.owner == OWNER
    assert settings.messaging_broker == BROKER
    assert settings.service_discovery == DISCOVERY
    assert settings.database_system == DATABASE


def test_unprefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "9123")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    settings = Settings()
    assert (settings.http_port, settings.log_level) == (9123, "DEBUG")
    assert settings.service_name == "renamed"


@pytest.mark.parametrize(("name", "value"), [("HTTP_PORT", "70000"), ("LOG_LEVEL", "LOUD")])
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=f"(?i){name}"):
        Settings()
